"""The SQL ledger: rounds, versions and server-optimizer state survive a new engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from clawfed.aggregation.registry import build_strategy
from clawfed.coordinator.engine import RoundEngine
from clawfed.coordinator.gateway import TaskKind, TaskOutcome, TaskRequest
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.ledger import SqlLedger
from clawfed.coordinator.memory_gateway import MemoryGateway
from clawfed.core import NodeInfo, Weights
from clawfed.governance.db import Database, sqlite_url
from clawfed.governance.jobs import JobStatus, JobStore
from clawfed.governance.registry import ModelRegistry


async def _node(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
    del weights
    if request.kind is TaskKind.INIT:
        return TaskOutcome("n", 0, {}, Weights({"w": np.ones(4, np.float32)}))
    return TaskOutcome("n", 10, {"loss": 0.5}, Weights({"w": np.full(4, 0.1, np.float32)}))


def _run(db: Database, root: Path, rounds: int) -> str | None:
    text = (
        f"name: adam\nmodel: {{name: noop}}\nrounds: {rounds}\nmin_nodes: 2\n"
        "round_deadline_s: 5\nstrategy: {name: fedadam, settings: {server_lr: 0.1}}\n"
    )
    spec = parse_job(text)
    gw = MemoryGateway()
    gw.connect(NodeInfo("a", "信贷部"), _node)
    gw.connect(NodeInfo("b", "合规部"), _node)
    engine = RoundEngine(
        gw, SqlLedger(db, root / "artifacts"), job_id="adam", spec=spec,
        strategy=build_strategy(spec.strategy.name, spec.strategy.settings),
    )  # fmt: skip
    return asyncio.run(engine.run())


def test_server_optimizer_state_survives_a_new_engine(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "s.db"))
    db.upgrade()
    jobs = JobStore(db)
    jobs.create("adam", "adam", "", 4)
    jobs.set_status("adam", JobStatus.RUNNING)
    stored_spec = "name: adam\nmodel: {name: noop}\nrounds: 4\nmin_nodes: 2\n"
    with db.session() as s:  # the ledger reads the stored spec for strategy settings
        from clawfed.governance.tables import JobRow

        row = s.get(JobRow, "adam")
        assert row is not None
        row.spec_yaml = stored_spec + "strategy: {name: fedadam, settings: {server_lr: 0.1}}\n"
    assert _run(db, tmp_path, 2) == "adam@v2"
    assert _run(db, tmp_path, 4) == "adam@v4"
    # an uninterrupted 4-round run gives the same weights: the moments were restored
    db2 = Database(sqlite_url(tmp_path / "t.db"))
    db2.upgrade()
    JobStore(db2).create("adam", "adam", "", 4)
    JobStore(db2).set_status("adam", JobStatus.RUNNING)
    with db2.session() as s:
        row = s.get(JobRow, "adam")
        assert row is not None
        row.spec_yaml = stored_spec + "strategy: {name: fedadam, settings: {server_lr: 0.1}}\n"
    _run(db2, tmp_path / "other", 4)
    resumed = ModelRegistry(db).latest("adam")
    straight = ModelRegistry(db2).latest("adam")
    assert [v.version_id for v in ModelRegistry(db).lineage("adam@v4")][-1] in {
        "adam@v1",
        "adam@v4",
    }
    assert resumed.sha256 == straight.sha256
    db.close()
    db2.close()
