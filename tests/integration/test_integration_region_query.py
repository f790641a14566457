"""The region question end to end: WeCom callback, federated query over real node processes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from integration_support import Procs as _Procs
from integration_support import clawfed, enroll, running_coordinator, store

from clawfed.chat.fake_wecom import FakeWeCom, serve_fake_wecom
from clawfed.chat.wecom_messages import image_mime
from clawfed.cli.demo_retail import (
    ADMIN,
    EMPLOYEE,
    HEAD,
    JOB_FILE,
    QUESTION,
    WECOM_DEPARTMENTS,
    app_messages,
    ask,
    retail_chat_section,
)
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.workspace import Workspace
from clawfed.data.retail import RETAIL_DEPARTMENTS, make_retail_scenario
from clawfed.governance.audit import AuditLog

PROFILES = {
    HEAD: {"name": "刘洋", "department": [30], "is_leader_in_dept": [1]},
    EMPLOYEE: {"name": "赵敏", "department": [10], "is_leader_in_dept": [0]},
}


def _job() -> Any:
    data = yaml.safe_load(JOB_FILE.read_text(encoding="utf-8"))
    data.update(rounds=2, evaluate_every=0, round_deadline_s=60)
    return parse_job(yaml.safe_dump(data, allow_unicode=True), source="retail test job")


def _texts(bodies: list[dict[str, Any]]) -> list[str]:
    return [str(b["text"]["content"]) for b in bodies if b.get("msgtype") == "text"]


def test_region_question_runs_a_federated_query_on_real_nodes(
    tmp_path: Path, workspace_factory: Any, procs: _Procs
) -> None:
    fake = FakeWeCom(users=(ADMIN, HEAD, EMPLOYEE), profiles=PROFILES,
                     departments={1: "总部", **WECOM_DEPARTMENTS})  # fmt: skip
    with serve_fake_wecom(fake=fake) as wecom:
        ws: Workspace = workspace_factory(chat=retail_chat_section(wecom))
        data = make_retail_scenario(2, tmp_path / "data")
        kits = {d: enroll(ws, d, name) for d, name in RETAIL_DEPARTMENTS.items()}

        async def scenario() -> list[Any]:
            async with running_coordinator(ws) as coordinator:
                # Coordinator.start attached the federated query to its chat by itself.
                for dept, kit in kits.items():  # started once the coordinator listens
                    argv = clawfed("node", "--kit", str(kit), "--data", f"retail={data[dept]}")
                    procs.start(dept, argv)
                live = await coordinator.hub.wait_for_nodes(None, 3, 90)
                assert len(live) == 3, [p.output()[-2000:] for p in procs.started]
                info = coordinator.jobs.submit(_job(), actor="test-admin")
                await coordinator.jobs.wait(info.job_id)
                assert coordinator.jobs.info(info.job_id).status == "completed"
                chat = coordinator.chat
                assert chat is not None
                return [
                    await asyncio.to_thread(ask, wecom, chat, user, question)
                    for user, question in (
                        (ADMIN, QUESTION),
                        (HEAD, QUESTION),
                        (EMPLOYEE, "/状态"),
                    )
                ]

        exchanges = asyncio.run(scenario())

    # the admin got the ack now, then a chart and its caption through message/send
    assert exchanges[0].reply == "收到，正在计算…"
    admin = app_messages(fake, ADMIN)
    images = [b for b in admin if b["msgtype"] == "image"]
    assert len(images) == 1
    assert image_mime(fake.media(images[0]["image"]["media_id"])) == "image/png"
    caption = "\n".join(_texts(admin))
    # 华东 holds 30 + 15 + 20 rows last month, 华南 25 + 12 (市场部's 6 rows are held back)
    assert "共 65 行" in caption and "共 37 行" in caption
    for dept in ("销售部", "物流部", "市场部"):
        assert dept in caption
    assert "已隐藏：市场部·华南" in caption and "k=10" in caption
    # the head of 市场部 sees only 市场部's cells
    head = "\n".join(_texts(app_messages(fake, HEAD)))
    assert "市场部：偏差" in head and "销售部" not in head and "物流部" not in head
    # the employee may not see the federation's status, and that refusal is audited
    assert exchanges[2].reply.startswith("抱歉，你无权进行此操作")
    with store(ws) as db:
        records = AuditLog(db).list(limit=1000)
    denied = [r for r in records if r.actor == EMPLOYEE and r.outcome == "denied"]
    assert denied and denied[0].detail["question"] == "/状态"
    asked = [r for r in records if r.actor == ADMIN and r.detail.get("question") == QUESTION]
    assert asked and asked[0].outcome == "allowed"
    assert set(asked[0].departments) == {"销售部", "物流部", "市场部"}
