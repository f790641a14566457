"""The notifier: coordinator events to zh / en notices, routed to channels, nothing leaked."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_chat_service_support import CANARY, chat_config, seed_job, seed_nodes

from clawfed.chat.fake_wecom import FakeWeCom, FakeWeComServer, serve_fake_wecom
from clawfed.chat.nlu import Lang
from clawfed.chat.notices import RoundFinished, VersionPublished
from clawfed.chat.outbox import Outbox, OutboxItem, OutboxStatus
from clawfed.chat.service import ChatConfig, ChatStore, ConfiguredChannels, Notifier
from clawfed.coordinator.round_records import Exclusion, Participant, RoundReport
from clawfed.governance import Database, sqlite_url

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@pytest.fixture()
def server() -> Iterator[FakeWeComServer]:
    with serve_fake_wecom(fake=FakeWeCom(users=("zhangsan", "lisi"))) as running:
        yield running


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(sqlite_url(tmp_path / "coord.db"))
    database.create_all()
    seed_nodes(database)
    seed_job(database, tmp_path / "artifacts")
    yield database
    database.close()


def report(job: str, round_no: int, accuracy: Mapping[str, float]) -> RoundReport:
    people = tuple(
        Participant(
            f"n-{i}",
            dept,
            500,
            {"accuracy": acc, "loss": 0.3, f"{CANARY}_rate": 0.5},
        )
        for i, (dept, acc) in enumerate(accuracy.items())
    )
    return RoundReport(
        job_id=job,
        round_no=round_no,
        attempt=1,
        started_at=T0,
        finished_at=T0,
        participants=people,
        dropped=(Exclusion("n-2", "straggler", CANARY),),
        rejected=(Exclusion("n-3", "non_finite", CANARY),),
        bytes_down=0,
        bytes_up=0,
    )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("node_joined", {"node_id": "n-0", "department": "信贷部"}),
    ("node_joined", {"node_id": "n-1", "department": "合规部"}),
    ("job_started", {"job_id": "fraud", "rounds": 5}),
    ("round_started", {"job_id": "fraud", "round": 1, "nodes": ["n-0", "n-1"]}),
    (
        "round_completed",
        {"job_id": "fraud", "round": 1, "version": "fraud@v1",
         "report": report("fraud", 1, {"信贷部": 0.80, "合规部": 0.70})},
    ),
    (
        "round_completed",
        {"job_id": "fraud", "round": 2, "version": "fraud@v2",
         "report": report("fraud", 2, {"信贷部": 0.85, "合规部": 0.60})},
    ),
    ("update_rejected", {"job_id": "fraud", "round": 2, "node_id": "n-1",
                         "reason": "non_finite", "detail": CANARY}),
    ("node_dropped", {"job_id": "fraud", "round": 2, "node_id": "n-0",
                      "reason": "straggler", "detail": CANARY}),
    ("node_dropped", {"job_id": "fraud", "round": 2, "node_id": "n-0",
                      "reason": CANARY, "detail": CANARY}),
    ("node_lost", {"node_id": "n-1", "department": "合规部"}),
    ("node_joined", {"node_id": "n-1", "department": "合规部"}),
    ("job_completed", {"job_id": "fraud", "version": "fraud@v2"}),
    ("job_failed", {"job_id": "other", "reason": f"node said: {CANARY}"}),
    ("approval_requested", {"job_id": "fraud", "department": "信贷部",
                            "requester": "wangwu", "purpose": "年度反欺诈模型"}),
]  # fmt: skip


def run_events(config: ChatConfig, db: Database, clock: Clock) -> list[OutboxItem]:
    outbox = Outbox(db, ConfiguredChannels(config))
    notifier = Notifier(config, outbox, store=ChatStore(db), clock=clock)
    for kind, data in EVENTS:
        notifier.handle(kind, data)
        if kind == "node_lost":
            clock.t += 126  # the node comes back two minutes later
    return outbox.items()


def texts(items: list[OutboxItem], channel: str) -> list[str]:
    return [i.message.text for i in items if i.channel == channel]


ZH_EXPECTED = [
    "**信贷部节点已加入联邦**",
    "**合规部节点已加入联邦**",
    "任务「fraud」开始训练",
    "参与部门（2个）：信贷部、合规部",
    "任务「fraud」第1/5轮训练完成",
    "信贷部本轮训练完成，准确率80.0%",
    "任务「fraud」模型 v1 已发布",
    "任务「fraud」第2/5轮训练完成",
    "信贷部本轮训练完成，准确率",
    "提升5.0%",
    "模型 v2 已发布",
    "指标下降",
    "合规部准确率",
    "下降10.0%",
    "合规部提交的更新被拒绝，原因：含非有限数值（NaN/Inf）",
    "信贷部节点 n-0 掉线，原因：straggler",
    "原因：other",
    "合规部节点已失联",
    "合规部节点已恢复在线",
    "离线时长：2分钟",
    "任务「fraud」训练完成",
    "最终模型：fraud@v2",
    "任务「other」训练失败",
    "审批请求：任务「fraud」",
    "wangwu申请使用信贷部的数据",
]
EN_EXPECTED = [
    "信贷部 node joined",
    "Job 'fraud' started training",
    "Departments (2): 信贷部, 合规部",
    "Job 'fraud': round 2/5 finished",
    "信贷部: accuracy",
    "Job 'fraud': model v2 published",
    "Anomaly: metric drop",
    "合规部: update rejected, non-finite values (NaN/Inf)",
    "信贷部: node n-0 dropped out, straggler",
    "合规部 node lost",
    "合规部 node is back online",
    "Offline for: 2 min",
    "Job 'fraud' completed",
    "Job 'other' failed",
    "Approval requested: job 'fraud'",
]


@pytest.mark.parametrize(("lang", "expected"), [("zh", ZH_EXPECTED), ("en", EN_EXPECTED)])
def test_every_event_is_rendered_in_the_configured_language(
    server: FakeWeComServer, db: Database, lang: str, expected: list[str]
) -> None:
    config = chat_config(server, language=lang)
    items = run_events(config, db, Clock())
    ops = "\n\n".join(texts(items, "ops"))
    for phrase in expected:
        assert phrase in ops, phrase
    assert all(i.message.kind == "markdown" for i in items if i.channel == "ops")
    if Lang(lang) is Lang.EN:
        assert "任务" not in ops and "节点" not in ops
    else:
        assert "Job '" not in ops and "node" not in ops


def test_routes_pick_the_channels_and_targets(server: FakeWeComServer, db: Database) -> None:
    items = run_events(chat_config(server), db, Clock())
    app = [i for i in items if i.channel == "app"]
    # anomalies only: the metric drop, the rejected update and the two dropped nodes
    assert len(app) == 4
    assert all(i.target == "lisi" and i.message.kind == "text" for i in app)
    assert all("异常" in i.message.text for i in app)
    assert len([i for i in items if i.channel == "ops"]) == 16


def test_no_pii_or_free_text_reaches_chat(server: FakeWeComServer, db: Database) -> None:
    items = run_events(chat_config(server), db, Clock())
    assert items
    for item in items:
        assert CANARY not in item.message.text
        assert "13800138000" not in item.message.text
        assert "身份证" not in item.message.text


def test_notices_reach_the_fake_wecom(server: FakeWeComServer, db: Database) -> None:
    config = chat_config(server)
    outbox = Outbox(db, ConfiguredChannels(config), poll_interval=0.05)
    notifier = Notifier(config, outbox, store=ChatStore(db))
    notifier.handle("node_lost", {"node_id": "n-credit", "department": "信贷部"})
    notifier.handle("node_dropped", {"job_id": "fraud", "round": 3, "node_id": "n-credit",
                                     "reason": "straggler", "detail": ""})  # fmt: skip
    outbox.start()
    try:
        assert outbox.wait_idle(10)
    finally:
        outbox.stop()
    robot = server.fake.accepted("/cgi-bin/webhook/send")
    assert [b["msgtype"] for b in robot] == ["markdown", "markdown"]
    assert "信贷部节点已失联" in robot[0]["markdown"]["content"]
    app = server.fake.accepted("/cgi-bin/message/send")
    assert len(app) == 1 and app[0]["touser"] == "lisi"
    assert "信贷部节点 n-credit 掉线" in app[0]["text"]["content"]


def test_unknown_node_department_comes_from_the_store(
    server: FakeWeComServer, db: Database
) -> None:
    config = chat_config(server)
    notifier = Notifier(config, Outbox(db, ConfiguredChannels(config)), store=ChatStore(db))
    [(_, notice)] = notifier.notices(
        "update_rejected",
        {"job_id": "fraud", "round": 1, "node_id": "n-audit", "reason": "digest_mismatch"},
    )
    assert getattr(notice, "department", None) == "审计部"


def test_bad_events_and_a_broken_store_never_raise(
    server: FakeWeComServer, db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = chat_config(server)
    outbox = Outbox(db, ConfiguredChannels(config))
    notifier = Notifier(config, outbox, store=ChatStore(db))
    with caplog.at_level(logging.ERROR, logger="clawfed.chat.service.notifier"):
        notifier.handle("round_completed", {"job_id": "fraud"})
        notifier.handle("node_dropped", {"round": "x"})
        notifier.handle("no_such_event", {})
    assert outbox.items() == []
    assert sum("cannot turn event" in r.message for r in caplog.records) == 2
    empty = Database(sqlite_url(tmp_path / "empty.db"))  # no outbox table: every insert fails
    try:
        broken = Notifier(config, Outbox(empty, ConfiguredChannels(config)))
        with caplog.at_level(logging.ERROR, logger="clawfed.chat.service.notifier"):
            broken.handle("node_lost", {"node_id": "n-x", "department": "质检部"})
        assert any("cannot queue" in r.message for r in caplog.records)
    finally:
        empty.close()


def test_closed_notifier_ignores_events(server: FakeWeComServer, db: Database) -> None:
    config = chat_config(server)
    outbox = Outbox(db, ConfiguredChannels(config))
    notifier = Notifier(config, outbox, store=ChatStore(db))
    notifier.close()
    notifier.handle("node_lost", {"node_id": "n-credit", "department": "信贷部"})
    assert outbox.counts()[OutboxStatus.PENDING] == 0


def test_metric_change_after_a_restart_comes_from_the_store(
    server: FakeWeComServer, db: Database
) -> None:
    config = chat_config(server)
    notifier = Notifier(config, Outbox(db, ConfiguredChannels(config)), store=ChatStore(db))
    data = {"job_id": "fraud", "round": 3, "version": "fraud@v3",
            "report": report("fraud", 3, {"信贷部": 0.88, "合规部": 0.79})}  # fmt: skip
    [(_, finished), (_, published)] = notifier.notices("round_completed", data)
    assert isinstance(finished, RoundFinished)
    assert [(c.department, c.previous) for c in finished.results] == [
        ("信贷部", 0.85),
        ("合规部", 0.74),
    ]
    assert isinstance(published, VersionPublished) and published.version == 3


AGGREGATION_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("anomaly", {"job_id": "fraud", "round": 3, "kind": "metric_drop", "metric": "accuracy",
                 "previous": 0.85, "current": 0.70, "worsening": 0.15, "summary": "",
                 "suspects": [{"node_id": "n-1", "department": "合规部", "cosine": -0.9,
                               "norm_ratio": 4.0, "action": "excluded"}]}),
    ("free_rider", {"job_id": "fraud", "round": 3, "node_id": "n-0", "department": "信贷部",
                    "kind": "copy_global", "evidence": "update norm 0 against median 1.2",
                    "policy": "exclude"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("zh", ["合规部", "信贷部的更新疑似搭便车（照抄全局模型）", "处理：已排除"]),
        ("en", ["合规部", "信贷部's update copies the global model", "Action: excluded"]),
    ],
)
def test_anomaly_attribution_and_free_riders_reach_chat(
    server: FakeWeComServer, db: Database, lang: str, expected: list[str]
) -> None:
    config = chat_config(server, language=lang)
    outbox = Outbox(db, ConfiguredChannels(config))
    notifier = Notifier(config, outbox, store=ChatStore(db), clock=Clock())
    for kind, data in AGGREGATION_EVENTS:
        notifier.handle(kind, data)
    ops = texts(outbox.items(), "ops")
    assert len(ops) == 2, ops
    assert "合规部" in ops[0] and "信贷部" not in ops[0]
    for phrase in expected:
        assert phrase in "\n".join(ops), (phrase, ops)
    app = [i for i in outbox.items() if i.channel == "app"]
    assert len(app) == 2  # both are anomalies, so they also go to the app route
