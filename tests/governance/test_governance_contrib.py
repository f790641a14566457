"""ContributionStore and migration 0004: the per-department contribution ledger, on both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from governance_support import StepClock
from sqlalchemy import inspect

from clawfed.core import Weights
from clawfed.core.errors import NotFoundError, StoreError
from clawfed.governance import (
    ArtifactStore,
    Database,
    JobStatus,
    JobStore,
    Participant,
    RoundOutcome,
    StrategyInfo,
)
from clawfed.governance.rounds import ContributionEntry, ContributionStore

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)


def _entry(n: int, node: str, dept: str, **kw: object) -> ContributionEntry:
    base: dict[str, object] = {
        "round_no": n, "node_id": node, "department": dept, "num_samples": 100,
        "weight": 100.0, "share": 0.5, "action": "kept",
    }  # fmt: skip
    return ContributionEntry(**(base | kw))  # type: ignore[arg-type]


def _complete(jobs: JobStore, artifacts: ArtifactStore, n: int) -> None:
    outcome = RoundOutcome(
        round_no=n,
        started_at=T0 + timedelta(minutes=n),
        finished_at=T0 + timedelta(minutes=n, seconds=30),
        participants=[Participant("c1", "credit", 100), Participant("a1", "audit", 100)],
    )
    artifact = artifacts.save(Weights({"w": np.full(3, n, np.float32)}), f"j@v{n}", {})
    jobs.complete_round(
        "j", outcome, artifact=artifact, strategy=StrategyInfo("fedavg", {}), new_state={}
    )


@pytest.fixture
def setup(db: Database, tmp_path: Path) -> tuple[JobStore, ContributionStore, ArtifactStore]:
    clock = StepClock()
    jobs = JobStore(db, clock=clock)
    jobs.create("j", "j", "rounds: 3\n", 3)
    jobs.set_status("j", JobStatus.RUNNING)
    return jobs, ContributionStore(db, clock=clock), ArtifactStore(tmp_path / "artifacts")


def test_entries_appear_once_the_round_completes_and_sum_per_department(
    setup: tuple[JobStore, ContributionStore, ArtifactStore],
) -> None:
    jobs, store, artifacts = setup
    details = {"weights": [{"node_id": "c1", "share": 0.75}], "compression": {"codec": "int8"}}
    store.record_round(
        "j", 1, details,
        [_entry(1, "c1", "credit", share=0.75, loo=0.02, shapley=0.03),
         _entry(1, "a1", "audit", share=0.25, loo=-0.01, shapley=-0.005,
                free_rider="copy_global", action="downweighted")],
    )  # fmt: skip
    assert store.entries("j") == []  # written ahead of the round: not visible yet
    with pytest.raises(NotFoundError, match="no aggregation record of round 1"):
        store.details("j", 1)
    _complete(jobs, artifacts, 1)
    assert [(e.node_id, e.shapley) for e in store.entries("j")] == [
        ("a1", -0.005),
        ("c1", 0.03),
    ]
    assert store.details("j", 1) == details
    store.record_round("j", 2, {}, [_entry(2, "c1", "credit", share=1.0, weight=80.0),
                                    _entry(2, "a1", "audit", share=0.0, weight=0.0,
                                           action="rejected", free_rider="replay")])  # fmt: skip
    _complete(jobs, artifacts, 2)
    summary = {s.department: s for s in store.summary("j")}
    assert summary["credit"].rounds == 2 and summary["credit"].measured_rounds == 1
    assert summary["credit"].total_shapley == pytest.approx(0.03)
    assert summary["credit"].mean_share == pytest.approx(0.875)
    assert (summary["audit"].flagged_rounds, summary["audit"].excluded_rounds) == (2, 1)
    assert summary["audit"].total_loo == pytest.approx(-0.01)


def test_a_retried_round_replaces_its_earlier_record(
    setup: tuple[JobStore, ContributionStore, ArtifactStore],
) -> None:
    jobs, store, artifacts = setup
    store.record_round("j", 1, {"attempt": 1}, [_entry(1, "c1", "credit"), _entry(1, "x", "x")])
    store.record_round("j", 1, {"attempt": 2}, [_entry(1, "c1", "credit", shapley=0.1)])
    _complete(jobs, artifacts, 1)
    assert [(e.node_id, e.shapley) for e in store.entries("j")] == [("c1", 0.1)]
    assert store.details("j", 1) == {"attempt": 2}


def test_bad_entries_and_unknown_jobs_are_refused(
    setup: tuple[JobStore, ContributionStore, ArtifactStore],
) -> None:
    _, store, _ = setup
    with pytest.raises(StoreError, match="shapley must be a finite number, got nan"):
        _entry(1, "c1", "credit", shapley=float("nan"))
    with pytest.raises(StoreError, match="share in"):
        _entry(1, "c1", "credit", share=1.5)
    with pytest.raises(StoreError, match="department must not be empty"):
        _entry(1, "c1", "")
    with pytest.raises(StoreError, match="one entry per node"):
        store.record_round("j", 1, {}, [_entry(1, "c1", "credit"), _entry(1, "c1", "credit")])
    with pytest.raises(StoreError, match="one entry per node"):
        store.record_round("j", 1, {}, [_entry(2, "c1", "credit")])
    with pytest.raises(NotFoundError, match="job 'nope' does not exist"):
        store.record_round("nope", 1, {}, [])
    with pytest.raises(NotFoundError, match="job 'nope' does not exist"):
        store.entries("nope")


def test_migration_0004_adds_the_ledger_tables(db_url: str) -> None:
    with Database(db_url) as database:
        database.upgrade("0003")
        assert "contributions" not in inspect(database.engine).get_table_names()
        database.upgrade()
        assert database.current_revision() == "0004"
        tables = set(inspect(database.engine).get_table_names())
        assert {"contributions", "round_details"} <= tables
        columns = {c["name"] for c in inspect(database.engine).get_columns("contributions")}
        assert {"department", "weight", "share", "loo", "shapley", "free_rider"} <= columns
        jobs = JobStore(database)
        jobs.create("j", "j", "rounds: 1\n", 1)
        ContributionStore(database).record_round("j", 1, {"ok": True}, [_entry(1, "c", "d")])
