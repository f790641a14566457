"""``clawfed demo``: a bank's three departments train one anti-fraud model together.

Everything is real except the data (synthetic, from ``clawfed.data.scenarios``) and the
machines (one): a federation CA, a coordinator with its TLS gate and SQL store, three node
processes that dial in over mutual TLS, a job submitted through the admin API, versions in
the registry, the audit chain verified at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.service import ChatService
from clawfed.chat.wecom_xml import parse_flat_xml
from clawfed.cli.chat_cmds import demo_chat_section
from clawfed.cli.common import console, setup_logging
from clawfed.coordinator.config import save_settings
from clawfed.coordinator.engine import RoundReport
from clawfed.coordinator.jobspec import parse_job, task_config
from clawfed.coordinator.server import Coordinator
from clawfed.coordinator.workspace import Workspace, enroll_node, init_workspace
from clawfed.core import ConfigError, JobError
from clawfed.data.scenarios import DEFAULT_FRAUD_ROWS, FRAUD_DEPARTMENTS, make_fraud_scenario
from clawfed.governance.audit import AuditLog
from clawfed.governance.registry import ModelRegistry

_MARKER = ".clawfed-demo"
_JOB = Path(__file__).resolve().parents[3] / "examples" / "fraud-job.yaml"
_SHOWN = ("roc_auc", "f1", "accuracy")
_ASKER = "zhangsan"
_QUESTIONS = ("训练进度怎么样", "信贷部模型准确率多少", "对比下信贷部和审计部的准确率", "/版本")
_ROUTED = ["job_started", "round_completed", "job_finished", "node_joined", "anomaly"]
_ROWS = dict(DEFAULT_FRAUD_ROWS)
_SHORT = {"roc_auc": "AUC", "f1": "F1", "accuracy": "acc"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fresh(folder: Path) -> None:
    if folder.exists():
        if not (folder / _MARKER).exists():
            raise ConfigError(f"{folder} exists and was not made by `clawfed demo`; pick --dir")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / _MARKER).write_text("made by clawfed demo; safe to delete\n", encoding="utf-8")


def _job_text(rounds: int) -> str:
    if not _JOB.is_file():
        raise ConfigError(f"the demo's job file {_JOB} is missing from this checkout")
    data: dict[str, Any] = yaml.safe_load(_JOB.read_text(encoding="utf-8"))
    data["rounds"] = rounds
    data["evaluate_every"] = 1
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _fmt(metrics: Mapping[str, float], name: str) -> str:
    value = metrics.get(name)
    return "—" if value is None else f"{value:.3f}"


class _Progress:
    """Prints one line per completed round, per department, as the engine reports it."""

    def __init__(self) -> None:
        self.reports: list[RoundReport] = []

    def __call__(self, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "round_completed":
            report = data["report"]
            assert isinstance(report, RoundReport)
            self.reports.append(report)
            parts = "  ".join(
                f"{p.department} AUC {_fmt(p.metrics, 'roc_auc')}" for p in report.participants
            )
            console.print(
                f"  round {report.round_no:>2}  {data['version']:<14} {parts}  "
                f"(all: {_fmt(report.metrics, 'roc_auc')}, {report.duration_s:.2f} s)"
            )
        elif kind in ("node_dropped", "update_rejected"):
            console.print(f"  [yellow]{kind}[/]: {data.get('node_id')} {data.get('reason')}")


def _start_nodes(
    root: Path, kits: Mapping[str, Path], data: Mapping[str, Path]
) -> list[subprocess.Popen[bytes]]:
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    procs = []
    for dept, kit in kits.items():
        csv = data[dept]
        mapping = csv.with_name(f"{dept}.harmonization.yaml")
        cmd = [sys.executable, "-m", "clawfed", "node", "--kit", str(kit),
               "--data", f"fraud={csv}", "--mapping", f"fraud={mapping}"]  # fmt: skip
        with (logs / f"{dept}.log").open("wb") as log:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _baselines(spec_text: str, data: Mapping[str, Path], rounds: int) -> dict[str, Any]:
    """Each department's model trained on its own data only (what it had before)."""
    from clawfed.node.baseline import local_baseline
    from clawfed.node.learning_runner import LearningRunner, LocalData

    config = task_config(parse_job(spec_text))
    out = {}
    for dept, csv in data.items():
        local = LocalData("fraud", csv, csv.with_name(f"{dept}.harmonization.yaml"))
        out[dept] = local_baseline(LearningRunner({"fraud": local}), config, rounds)
    return out


def _ask(wecom: FakeWeComServer, chat: ChatService) -> list[tuple[str, str]]:
    """A staff member asks the bot in plain Chinese, through WeCom's encrypted callback."""
    base = chat.callback_url
    if base is None:
        raise JobError("the demo's chat callback endpoint did not start")
    answers = []
    for question in _QUESTIONS:
        delivery = wecom.fake.post_user_message(base, _ASKER, question)
        if not delivery.delivered:
            raise JobError(
                f"the chat endpoint answered HTTP {delivery.status_code} to {question!r}"
            )
        reply = ""
        if delivery.reply_xml:
            reply = parse_flat_xml(delivery.reply_xml).get("Content", "")
        answers.append((question, reply or "(the answer follows as an application message)"))
    chat.outbox.wait_idle(30)
    return answers


def _transcript(fake: FakeWeCom) -> None:
    console.rule("WeCom transcript (what the local WeCom received)")
    for entry in fake.transcript():
        body = entry.body or {}
        if entry.path.endswith("/webhook/send") or entry.path.endswith("/message/send"):
            kind = str(body.get("msgtype", ""))
            part = body.get(kind)
            text = part.get("content", "") if isinstance(part, dict) else ""
            who = "群机器人" if entry.path.endswith("/webhook/send") else "应用消息"
            shown = text if text else f"[{kind}]"
            console.print(f"[bold]{who}[/] {escape(shown)}", highlight=False)
        elif entry.path.endswith("/media/upload"):
            console.print("[bold]应用消息[/] \\[chart image uploaded]", highlight=False)


def _summary(ws: Workspace, job: str, baselines: Mapping[str, Any]) -> None:
    db = ws.database()
    try:
        versions = ModelRegistry(db).list(job)
        verify = AuditLog(db).verify()
        audit_count = verify.checked
    finally:
        db.close()
    if not versions:
        return
    final = versions[-1]
    table = Table(
        "department",
        "rows",
        *(f"fed {_SHORT[m]}" for m in _SHOWN),
        *(f"own {_SHORT[m]}" for m in _SHOWN),
        title=f"{final.version_id} (fed) vs each department's own model (own), on its holdout",
    )
    names = {p.node_id: p.department for p in final.participants}
    samples = {p.node_id: p.num_samples for p in final.participants}
    for node_id, dept in names.items():
        fed = final.department_metrics.get(dept, {})
        local = baselines.get(node_id, {})
        table.add_row(dept, str(samples[node_id]), *(_fmt(fed, m) for m in _SHOWN),
                      *(_fmt(local, m) for m in _SHOWN))  # fmt: skip
    console.print(table)
    console.print(
        f"version {final.version_id}: sha256 {final.sha256[:16]}…, parent "
        f"{final.parent_version_id}, {len(versions)} versions in the registry"
    )
    state = "intact" if verify.ok else f"BROKEN at record {verify.first_bad_seq}"
    console.print(f"audit chain: {audit_count} records, {state}")


async def _run(root: Path, rounds: int) -> None:
    _fresh(root)
    console.print(
        f"[bold]clawfed demo[/] in {root}: 信贷部, 合规部 and 审计部 train an "
        "anti-fraud model together; rows never leave their node"
    )
    data = make_fraud_scenario(26, _ROWS, root / "data")
    ws = init_workspace(root / "ws", federation="demo-bank", port=_free_port())
    wecom = serve_fake_wecom("127.0.0.1", 0, fake=FakeWeCom(users=(_ASKER, "lisi", "wangwu")))
    chat = demo_chat_section(wecom)
    chat["http_port"] = _free_port()
    chat["routes"] = [{"events": _ROUTED, "channel": "group"}]
    settings = ws.settings.model_copy(update={"chat": chat})
    save_settings(ws.root, settings)
    ws = Workspace(ws.root, settings)
    console.print(f"local WeCom (企业微信) at {wecom.url}: the group robot gets notifications")
    kits = {}
    for dept, name in FRAUD_DEPARTMENTS.items():
        kits[dept] = root / f"{dept}.kit"
        enroll_node(ws, dept, name, kits[dept])
    console.print(f"federation CA, coordinator certificate and 3 enrollment kits in {root}")
    coordinator = Coordinator(ws)
    progress = _Progress()
    coordinator.listeners.append(progress)
    port = await coordinator.start()
    console.print(f"coordinator on 127.0.0.1:{port} (mutual TLS); starting 3 node processes")
    procs = _start_nodes(root, kits, data)
    try:
        live = await coordinator.hub.wait_for_nodes(None, len(kits), 120)
        if len(live) < len(kits):
            raise JobError(f"only {len(live)} of {len(kits)} nodes connected; see {root}/logs")
        console.print("nodes connected: " + ", ".join(f"{n.department}" for n in live))
        text = _job_text(rounds)
        info = coordinator.jobs.submit(parse_job(text, source=str(_JOB)), actor="demo-admin")
        console.print(f"job [bold]{info.job_id}[/]: {rounds} rounds of FedAvg, logistic regression")
        await coordinator.jobs.wait(info.job_id)
        final = coordinator.jobs.info(info.job_id)
        console.print(f"job {final.job_id}: {final.status} {final.message}")
        if final.status != "completed":
            raise JobError(f"the demo job ended {final.status}: {final.message}")
        assert coordinator.chat is not None
        answers = await asyncio.to_thread(_ask, wecom, coordinator.chat)
    finally:
        _stop(procs)
        await coordinator.stop()
        wecom.stop()
    console.print("training the same model on each department's data alone, for comparison…")
    baselines = await asyncio.to_thread(_baselines, text, data, rounds)
    _summary(ws, info.job_id, baselines)
    _transcript(wecom.fake)
    console.rule(f"questions from {_ASKER} in WeCom, answered through the encrypted callback")
    for question, reply in answers:
        console.print(f"[bold]{_ASKER}:[/] {escape(question)}", highlight=False)
        console.print(f"[bold]clawfed:[/] {escape(reply)}", highlight=False)


def demo(
    folder: Annotated[Path, typer.Option("--dir", help="Folder for the demo (recreated).")] = Path(
        "demo-ws"
    ),
    rounds: Annotated[int, typer.Option(min=1, max=200, help="Federated rounds.")] = 12,
) -> None:
    """Run a three-department federation end to end on this machine."""
    setup_logging()
    import logging

    logging.getLogger("clawfed").setLevel(logging.WARNING)
    for noisy in ("alembic", "httpx", "uvicorn", "uvicorn.error", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(_run(folder.resolve(), rounds))


def register(app: typer.Typer) -> None:
    """Add the demo command to the top-level app."""
    app.command()(demo)
