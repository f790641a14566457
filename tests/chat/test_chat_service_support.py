"""Helpers for the chat service tests: a seeded governance store and a chat config (no tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from clawfed.chat.fake_wecom import FakeWeComServer
from clawfed.chat.service import ChatConfig, load_chat_config
from clawfed.core.weights import Weights
from clawfed.governance import (
    ArtifactStore,
    AuditLog,
    Database,
    JobStatus,
    JobStore,
    NodeRegistry,
    Participant,
    RoundOutcome,
    StrategyInfo,
    sqlite_url,
)

FP = "ab" * 32
START = datetime(2026, 10, 5, 2, 0, tzinfo=UTC)
CANARY = "CANARY-13800138000-张三身份证110101199003077777"

#: department -> metrics, per round, for the job "fraud".
FRAUD_ROUNDS: tuple[Mapping[str, Mapping[str, float]], ...] = (
    {"信贷部": {"accuracy": 0.80, "loss": 0.50}, "合规部": {"accuracy": 0.70, "loss": 0.60}},
    {"信贷部": {"accuracy": 0.85, "loss": 0.40}, "合规部": {"accuracy": 0.74, "loss": 0.55}},
    {"信贷部": {"accuracy": 0.88, "loss": 0.35}, "合规部": {"accuracy": 0.79, "loss": 0.50}},
)


def seed_nodes(db: Database) -> None:
    """Three nodes: credit and compliance online, audit offline."""
    nodes = NodeRegistry(db)
    for serial, (node, dept, online) in enumerate(
        (("n-credit", "信贷部", True), ("n-comp", "合规部", True), ("n-audit", "审计部", False)), 1
    ):
        nodes.enroll(node, dept, serial, FP.replace("ab", f"{serial:02x}", 1))
        nodes.mark_seen(node, START)
        nodes.set_connected(node, online)


def seed_job(
    db: Database,
    root: Path,
    name: str = "fraud",
    rounds: Sequence[Mapping[str, Mapping[str, float]]] = FRAUD_ROUNDS,
    *,
    start: datetime = START,
    step: timedelta = timedelta(days=1),
    total: int = 5,
) -> None:
    """A running job with one model version per entry of ``rounds``, a ``step`` apart."""
    jobs = JobStore(db)
    jobs.create(name, name, f"name: {name}\n", total)
    jobs.set_status(name, JobStatus.RUNNING)
    artifacts = ArtifactStore(root / name)
    for i, per_dept in enumerate(rounds, 1):
        when = start + step * (i - 1)
        weights = Weights({"w": np.full(4, float(i), dtype=np.float32)})
        artifact = artifacts.save(weights, f"round-{i}", {"job": name})
        people = [
            Participant(f"n-{k}", dept, 1000 * (k + 1)) for k, dept in enumerate(sorted(per_dept))
        ]
        overall = {"accuracy": sum(m["accuracy"] for m in per_dept.values()) / len(per_dept)}
        outcome = RoundOutcome(
            round_no=i,
            started_at=when,
            finished_at=when,
            participants=people,
            metrics=overall,
            department_metrics=per_dept,
        )
        jobs.complete_round(
            name, outcome, artifact=artifact, strategy=StrategyInfo("fedavg"), new_state={}
        )


def seed_audit(db: Database) -> None:
    """A few audit entries."""
    log = AuditLog(db)
    log.append("data-admin", "data_admin", "job.submit", "job:fraud", [], {"rounds": 5}, "ok")
    log.append("n-credit", "node", "connect", "federation", ["信贷部"], {}, "ok")
    log.append("n-comp", "node", "connect", "federation", ["合规部"], {}, "ok")


def chat_config(server: FakeWeComServer, **extra: Any) -> ChatConfig:
    """A config with a group robot ``ops`` and the fake's WeCom app ``app``."""
    fake = server.fake
    data: dict[str, Any] = {
        "channels": {
            "ops": {"type": "wecom_robot", "webhook_url": server.robot_url()},
            "app": {
                "type": "wecom_app",
                "api_base": server.api_base,
                "corp_id": fake.corp_id,
                "corp_secret": fake.corp_secret,
                "agent_id": fake.agent_id,
                "token": fake.callback_token,
                "encoding_aes_key": fake.encoding_aes_key,
                "to_users": ["zhangsan"],
            },
        },
        "routes": [
            {"events": list(_ALL_EVENTS), "channel": "ops"},
            {"events": ["anomaly"], "channel": "app", "target": "lisi"},
        ],
    }
    data.update(extra)
    return load_chat_config(data, source="test")


_ALL_EVENTS = (
    "job_started",
    "round_completed",
    "job_finished",
    "node_joined",
    "node_lost",
    "node_back",
    "version_published",
    "anomaly",
    "approval_requested",
)


def seeded(root: Path) -> Database:
    """A store under ``root`` with the seeded nodes, job (artifacts in ``root``) and audit."""
    database = Database(sqlite_url(root / "coord.db"))
    database.create_all()
    seed_nodes(database)
    seed_job(database, root / "artifacts")
    seed_audit(database)
    return database
