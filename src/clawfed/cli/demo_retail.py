"""``clawfed demo --scenario retail``: 销售部, 物流部 and 市场部 forecast sales together, then ask.

Everything is real except the data (synthetic, ``clawfed.data.retail``) and WeCom (the
local fake, same endpoints and encryption): a federation CA, a coordinator with its TLS
gate and SQL store, three node processes over mutual TLS, a regression job trained for a
few rounds, and then a data admin, a department head and an employee asking in WeCom
"对比下华东和华南区域上月销量预测偏差". The admin's question runs as a federated query
(each node measures the current model on its own rows; groups under k rows are held back)
and comes back as text and a chart labelled by department.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.markup import escape

from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.service import ChatService, chat_runtime
from clawfed.chat.wecom_xml import parse_flat_xml
from clawfed.cli.chat_cmds import demo_chat_section
from clawfed.cli.common import console
from clawfed.cli.demo_support import free_port, fresh_folder, start_nodes, stop_processes
from clawfed.coordinator.config import save_settings
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.server import Coordinator
from clawfed.coordinator.workspace import Workspace, enroll_node, init_workspace
from clawfed.core import ConfigError, JobError
from clawfed.data.retail import RETAIL_DEPARTMENTS, RETAIL_REFERENCE_DATE, make_retail_scenario
from clawfed.node.learning_runner import LocalData

JOB_FILE = Path(__file__).resolve().parents[3] / "examples" / "retail-job.yaml"
QUESTION = "对比下华东和华南区域上月销量预测偏差"
CHART_NAME = "region-forecast-bias.png"
#: WeCom department ids of the demo corp and the clawfed department each stands for.
WECOM_DEPARTMENTS = {10: "销售部", 20: "物流部", 30: "市场部"}
#: The people who ask: a data admin (from config), a head and an employee (from user/get).
ADMIN, HEAD, EMPLOYEE = "wanglei", "liuyang", "zhaomin"
_PROFILES = {
    HEAD: {"name": "刘洋", "department": [30], "is_leader_in_dept": [1], "position": "市场部经理"},
    EMPLOYEE: {"name": "赵敏", "department": [10], "is_leader_in_dept": [0], "position": "销售"},
    ADMIN: {"name": "王磊", "department": [1], "is_leader_in_dept": [0], "position": "数据管理员"},
}


@dataclass(frozen=True)
class Exchange:
    """One question asked in WeCom and what came back (passive reply, later messages)."""

    user: str
    question: str
    reply: str


def retail_chat_section(wecom: FakeWeComServer) -> dict[str, Any]:
    """The demo's ``chat:`` section: the fake WeCom, roles, and the scenario's reference date."""
    chat = demo_chat_section(wecom)
    chat["http_port"] = free_port()
    chat["routes"] = [{"events": ["round_completed", "job_finished"], "channel": "group"}]
    chat["today"] = RETAIL_REFERENCE_DATE.isoformat()
    chat["access"] = {
        "people": {ADMIN: {"role": "data_admin"}},
        "wecom_departments": dict(WECOM_DEPARTMENTS),
        "lookup": True,
        "entitlements": ["retail-sales"],
    }
    return chat


def retail_job_text(rounds: int) -> str:
    """``examples/retail-job.yaml`` with ``rounds`` rounds."""
    if not JOB_FILE.is_file():
        raise ConfigError(f"the retail demo's job file {JOB_FILE} is missing from this checkout")
    data: dict[str, Any] = yaml.safe_load(JOB_FILE.read_text(encoding="utf-8"))
    data["rounds"] = rounds
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def ask(wecom: FakeWeComServer, chat: ChatService, user: str, question: str) -> Exchange:
    """``user`` types ``question`` in WeCom; the encrypted callback carries it to chat."""
    base = chat.callback_url
    if base is None:
        raise JobError("the demo's chat callback endpoint did not start")
    delivery = wecom.fake.post_user_message(base, user, question)
    if not delivery.delivered:
        raise JobError(f"the chat endpoint answered HTTP {delivery.status_code} to {question!r}")
    reply = parse_flat_xml(delivery.reply_xml).get("Content", "") if delivery.reply_xml else ""
    if not chat_runtime(chat.app).wait_idle(120) or not chat.outbox.wait_idle(60):
        raise JobError("the chat answers were not all sent within the demo's time limit")
    return Exchange(user, question, reply)


def app_messages(fake: FakeWeCom, user: str) -> list[dict[str, Any]]:
    """The application messages WeCom accepted for ``user``, oldest first."""
    return [b for b in fake.accepted("/cgi-bin/message/send") if user in str(b.get("touser"))]


def save_chart(fake: FakeWeCom, user: str, path: Path) -> Path | None:
    """Save the last image sent to ``user`` (the chart) to ``path``."""
    images = [b for b in app_messages(fake, user) if b.get("msgtype") == "image"]
    if not images:
        return None
    path.write_bytes(fake.media(str(images[-1]["image"]["media_id"])))
    return path


async def _run(root: Path, rounds: int) -> dict[str, Any]:
    fresh_folder(root)
    data = make_retail_scenario(5, root / "data")
    ws = init_workspace(root / "ws", federation="demo-retail", port=free_port())
    fake = FakeWeCom(users=(ADMIN, HEAD, EMPLOYEE), profiles=_PROFILES,
                     departments={1: "总部", **WECOM_DEPARTMENTS})  # fmt: skip
    wecom = serve_fake_wecom("127.0.0.1", 0, fake=fake)
    try:
        settings = ws.settings.model_copy(update={"chat": retail_chat_section(wecom)})
        save_settings(ws.root, settings)
        ws = Workspace(ws.root, settings)
        kits = {}
        for dept, name in RETAIL_DEPARTMENTS.items():
            kits[dept] = root / f"{dept}.kit"
            enroll_node(ws, dept, name, kits[dept])
        coordinator = Coordinator(ws)
        await coordinator.start()  # attaches federated queries to its chat
        procs = start_nodes(root, kits, {d: LocalData("retail", p) for d, p in data.items()})
        try:
            live = await coordinator.hub.wait_for_nodes(None, len(kits), 120)
            if len(live) < len(kits):
                raise JobError(f"only {len(live)} of {len(kits)} nodes connected; see {root}/logs")
            spec = parse_job(retail_job_text(rounds), source=str(JOB_FILE))
            info = coordinator.jobs.submit(spec, actor="demo-admin")
            await coordinator.jobs.wait(info.job_id)
            final = coordinator.jobs.info(info.job_id)
            if final.status != "completed":
                raise JobError(f"the retail job ended {final.status}: {final.message}")
            assert coordinator.chat is not None
            chat = coordinator.chat
            exchanges = []
            for user in (ADMIN, HEAD, EMPLOYEE):
                exchanges.append(await asyncio.to_thread(ask, wecom, chat, user, QUESTION))
            exchanges.append(await asyncio.to_thread(ask, wecom, chat, EMPLOYEE, "/状态"))
        finally:
            stop_processes(procs)
            await coordinator.stop()
        chart = save_chart(fake, ADMIN, root / CHART_NAME)
        later = {
            u: [_message_text(b) for b in app_messages(fake, u)] for u in (ADMIN, HEAD, EMPLOYEE)
        }
    finally:
        wecom.stop()
    return {
        "job": info.job_id,
        "version": final.message,
        "reference_date": RETAIL_REFERENCE_DATE.isoformat(),
        "exchanges": [e.__dict__ for e in exchanges],
        "messages": later,
        "chart": None if chart is None else str(chart),
    }


def _message_text(body: Mapping[str, Any]) -> str:
    kind = str(body.get("msgtype", ""))
    part = body.get(kind)
    if kind == "image":
        return "[chart image]"
    return str(part.get("content", "")) if isinstance(part, dict) else f"[{kind}]"


def _print(result: Mapping[str, Any]) -> None:
    console.rule(f"retail demo: job {result['job']} ({result['version']})")
    console.print(f"'上月' is read against the scenario's date {result['reference_date']}")
    for e in result["exchanges"]:
        console.print(f"[bold]{e['user']}:[/] {escape(e['question'])}", highlight=False)
        console.print(f"[bold]clawfed:[/] {escape(e['reply'] or '(empty)')}", highlight=False)
    for user, texts in result["messages"].items():
        for text in texts:
            console.print(f"[bold]→ {user}[/] {escape(text)}", highlight=False)
    console.print(f"chart saved to {result['chart']}")


def run_retail_demo(folder: Path, *, as_json: bool) -> int:
    """Run the retail scenario end to end in ``folder`` (recreated); 0 on success.

    Parameters
    ----------
    folder
        Where the workspace, data, logs and the chart go.
    as_json
        Print the transcript as JSON instead of text.
    """
    result = asyncio.run(_run(folder.resolve(), 4))
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    else:
        _print(result)
    return 0 if result["chart"] else 1
