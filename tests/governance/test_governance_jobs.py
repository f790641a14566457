"""JobStore and ModelRegistry: job lifecycle, rounds, atomic completion and model versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from governance_support import StepClock
from sqlalchemy import func, select, text

from clawfed.core import Weights
from clawfed.core.errors import NotFoundError, StoreError
from clawfed.governance import (
    Artifact,
    ArtifactStore,
    Database,
    DroppedNode,
    JobStatus,
    JobStore,
    ModelRegistry,
    Participant,
    RejectedNode,
    RoundOutcome,
    RoundStatus,
    StrategyInfo,
    sqlite_url,
)
from clawfed.governance.tables import ModelVersionRow, RoundRow

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
FEDAVG = StrategyInfo("fedavg", {"fraction_fit": 1.0})


@pytest.fixture
def jobs(db: Database, clock: StepClock) -> JobStore:
    return JobStore(db, clock=clock)


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def _running(
    jobs: JobStore, job_id: str = "j1", name: str = "credit-risk", rounds: int = 3
) -> None:
    jobs.create(job_id, name, "rounds: 3\n", rounds, strategy_state={"step": 0})
    jobs.set_status(job_id, JobStatus.RUNNING)


def _outcome(n: int, **extra: object) -> RoundOutcome:
    return RoundOutcome(
        round_no=n,
        started_at=T0 + timedelta(minutes=n),
        finished_at=T0 + timedelta(minutes=n, seconds=30),
        participants=[Participant("c1", "credit", 100), Participant("a1", "audit", 50 + n)],
        metrics={"accuracy": 0.5 + n / 10},
        department_metrics={"credit": {"accuracy": 0.6}, "audit": {"accuracy": 0.4}},
        bytes_down=1000,
        bytes_up=2000,
        **extra,  # type: ignore[arg-type]
    )


def _artifact(artifacts: ArtifactStore, n: int) -> Artifact:
    return artifacts.save(Weights({"w": np.full(3, n, np.float32)}), f"credit-risk@v{n}", {})


def _counts(db: Database) -> tuple[int, int]:
    with db.session() as s:
        rounds = s.scalar(select(func.count()).select_from(RoundRow)) or 0
        versions = s.scalar(select(func.count()).select_from(ModelVersionRow)) or 0
    return rounds, versions


def test_create_get_and_list(jobs: JobStore) -> None:
    a = jobs.create("j1", "credit-risk", "name: credit-risk\n", 5)
    b = jobs.create("j2", "信贷风控", "x: 1\n", 2, strategy_state={"m": [0.0, 1.0]})
    assert a.status is JobStatus.PENDING and a.rounds_done == 0 and a.message == ""
    assert a.created_at.tzinfo is not None and a.created_at == a.updated_at
    assert jobs.get("j2") == b and dict(b.strategy_state) == {"m": [0.0, 1.0]}
    assert jobs.list() == [a, b]
    assert jobs.list(JobStatus.RUNNING) == []


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (("", "n", "", 1), "job_id must not be empty"),
        (("j", "has space", "", 1), "job name must be"),
        (("j", "a@b", "", 1), "job name must be"),
        (("j", "n" * 65, "", 1), "job name must be"),
        (("j", "n", "", 0), "rounds_total must be >= 1"),
        (("j", "n", None, 1), "spec_yaml must be a string"),
    ],
)
def test_bad_jobs_are_refused(jobs: JobStore, args: tuple[object, ...], rule: str) -> None:
    with pytest.raises(StoreError, match=rule):
        jobs.create(*args)  # type: ignore[arg-type]
    assert jobs.list() == []


def test_duplicate_id_or_name_is_refused(jobs: JobStore) -> None:
    jobs.create("j1", "credit-risk", "", 1)
    with pytest.raises(StoreError, match="job 'j1' already exists"):
        jobs.create("j1", "other", "", 1)
    with pytest.raises(StoreError, match="name 'credit-risk' is already used by job 'j1'"):
        jobs.create("j2", "credit-risk", "", 1)


def test_strategy_state_must_be_json(jobs: JobStore) -> None:
    with pytest.raises(StoreError, match="strategy_state must be JSON-serializable"):
        jobs.create("j1", "n", "", 1, strategy_state={"m": np.zeros(2)})


def test_status_transitions(jobs: JobStore) -> None:
    jobs.create("j1", "a", "", 1)
    with pytest.raises(StoreError, match="cannot go from pending to completed"):
        jobs.set_status("j1", JobStatus.COMPLETED)
    rec = jobs.set_status("j1", JobStatus.RUNNING, "started by alice")
    assert rec.status is JobStatus.RUNNING and rec.message == "started by alice"
    assert rec.updated_at > rec.created_at
    assert jobs.resumable_jobs() == [rec]
    jobs.set_status("j1", JobStatus.COMPLETED, "done")
    with pytest.raises(StoreError, match="cannot go from completed to running"):
        jobs.set_status("j1", JobStatus.RUNNING)
    with pytest.raises(StoreError, match="job status must be one of pending, running"):
        jobs.set_status("j1", "paused")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="job 'nope' does not exist"):
        jobs.set_status("nope", JobStatus.RUNNING)
    assert jobs.resumable_jobs() == []


def test_complete_round_registers_versions_with_lineage(
    jobs: JobStore, db: Database, artifacts: ArtifactStore
) -> None:
    _running(jobs)
    first = jobs.complete_round(
        "j1", _outcome(1, dropped=[DroppedNode("r1", "timeout")]),
        artifact=_artifact(artifacts, 1), strategy=FEDAVG, new_state={"step": 1},
    )  # fmt: skip
    second = jobs.complete_round(
        "j1", _outcome(2, rejected=[RejectedNode("x1", "non_finite", "tensor 'w'")]),
        artifact=_artifact(artifacts, 2), strategy=FEDAVG, new_state={"step": 2},
    )  # fmt: skip
    assert first.version.version_id == "credit-risk@v1" and first.version.parent_version_id is None
    assert second.version.version_id == "credit-risk@v2"
    assert second.version.parent_version_id == "credit-risk@v1"
    assert second.version.num_samples == 152
    assert second.version.strategy == FEDAVG
    assert dict(second.version.department_metrics["credit"]) == {"accuracy": 0.6}
    r = first.round
    assert (r.round_no, r.attempt, r.status, r.version_id) == (
        1, 1, RoundStatus.COMPLETED, "credit-risk@v1",
    )  # fmt: skip
    assert r.dropped == (DroppedNode("r1", "timeout"),) and r.bytes_up == 2000
    assert second.round.rejected == (RejectedNode("x1", "non_finite", "tensor 'w'"),)
    job = jobs.get("j1")
    assert job.rounds_done == 2 and dict(job.strategy_state) == {"step": 2}
    registry = ModelRegistry(db)
    assert registry.latest("j1") == second.version
    assert registry.get("credit-risk@v1") == first.version
    assert [v.version_id for v in registry.lineage("credit-risk@v2")] == [
        "credit-risk@v2", "credit-risk@v1",
    ]  # fmt: skip
    assert registry.list("j1") == [first.version, second.version] == registry.list()
    v = registry.latest("j1")
    np.testing.assert_array_equal(artifacts.load(v.artifact_path, v.sha256)["w"], np.full(3, 2))


def test_a_round_completed_twice_is_refused(
    jobs: JobStore, db: Database, artifacts: ArtifactStore
) -> None:
    _running(jobs)
    art = _artifact(artifacts, 1)
    jobs.complete_round("j1", _outcome(1), artifact=art, strategy=FEDAVG, new_state={})
    with pytest.raises(StoreError, match="round 1 of job 'j1' was already completed"):
        jobs.complete_round("j1", _outcome(1), artifact=art, strategy=FEDAVG, new_state={})
    with pytest.raises(StoreError, match="already completed"):
        jobs.start_round("j1", 1)
    assert _counts(db) == (1, 1)


def test_rounds_must_come_in_order_and_within_the_total(
    jobs: JobStore, artifacts: ArtifactStore
) -> None:
    _running(jobs, rounds=2)
    with pytest.raises(StoreError, match="the next one is 1, got 2"):
        jobs.complete_round("j1", _outcome(2), artifact=_artifact(artifacts, 2),
                            strategy=FEDAVG, new_state={})  # fmt: skip
    for n in (1, 2):
        jobs.complete_round("j1", _outcome(n), artifact=_artifact(artifacts, n),
                            strategy=FEDAVG, new_state={})  # fmt: skip
    with pytest.raises(StoreError, match="has 2 rounds, got round 3"):
        jobs.start_round("j1", 3)


def test_rounds_are_recorded_only_while_running(jobs: JobStore, artifacts: ArtifactStore) -> None:
    jobs.create("j1", "credit-risk", "", 3)
    with pytest.raises(StoreError, match="job 'j1' is pending"):
        jobs.complete_round("j1", _outcome(1), artifact=_artifact(artifacts, 1),
                            strategy=FEDAVG, new_state={})  # fmt: skip
    with pytest.raises(NotFoundError):
        jobs.start_round("ghost", 1)


def test_attempts_fail_retry_and_complete(jobs: JobStore, artifacts: ArtifactStore) -> None:
    _running(jobs)
    a1 = jobs.start_round("j1", 1, started_at=T0)
    assert (a1.attempt, a1.status, a1.finished_at) == (1, RoundStatus.RUNNING, None)
    with pytest.raises(StoreError, match="attempt 1 running; fail or complete it first"):
        jobs.start_round("j1", 1)
    failed = jobs.fail_round("j1", 1, message="quorum lost", retry=True,
                             dropped=[DroppedNode("c1", "disconnected")])  # fmt: skip
    assert failed.status is RoundStatus.RETRIED and failed.message == "quorum lost"
    with pytest.raises(StoreError, match="has no running attempt"):
        jobs.fail_round("j1", 1, message="again", retry=False)
    jobs.start_round("j1", 1)
    done = jobs.complete_round("j1", _outcome(1), artifact=_artifact(artifacts, 1),
                               strategy=FEDAVG, new_state={})  # fmt: skip
    assert done.round.attempt == 2
    assert [(r.attempt, r.status) for r in jobs.rounds("j1")] == [
        (1, RoundStatus.RETRIED), (2, RoundStatus.COMPLETED),
    ]  # fmt: skip


def test_stopping_a_job_fails_its_running_attempt(jobs: JobStore) -> None:
    _running(jobs)
    jobs.start_round("j1", 1)
    jobs.set_status("j1", JobStatus.CANCELLED, "stopped by admin")
    (attempt,) = jobs.rounds("j1")
    assert attempt.status is RoundStatus.FAILED
    assert attempt.message == "job became cancelled: stopped by admin"
    assert attempt.finished_at is not None


@pytest.mark.parametrize("table", ["model_versions", "rounds"])
def test_a_failure_mid_completion_leaves_nothing_behind(
    jobs: JobStore, db: Database, artifacts: ArtifactStore, table: str
) -> None:
    _running(jobs)
    before = jobs.get("j1")
    with db.engine.begin() as conn:  # a real database failure inside the transaction
        conn.execute(text(f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} "
                          "BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END"))  # fmt: skip
    with pytest.raises(StoreError, match="disk full"):
        jobs.complete_round("j1", _outcome(1), artifact=_artifact(artifacts, 1),
                            strategy=FEDAVG, new_state={"step": 99})  # fmt: skip
    assert jobs.get("j1") == before
    assert _counts(db) == (0, 0)
    with pytest.raises(NotFoundError, match="has no model version yet"):
        ModelRegistry(db).latest("j1")
    with db.engine.begin() as conn:
        conn.execute(text(f"DROP TRIGGER fail_{table}"))
    done = jobs.complete_round("j1", _outcome(1), artifact=_artifact(artifacts, 1),
                               strategy=FEDAVG, new_state={"step": 1})  # fmt: skip
    assert done.version.number == 1 and jobs.get("j1").rounds_done == 1


def test_a_bad_argument_after_the_first_write_rolls_everything_back(
    jobs: JobStore, db: Database
) -> None:
    _running(jobs)
    before = jobs.get("j1")
    with pytest.raises(StoreError, match="artifact must be an Artifact"):
        jobs.complete_round("j1", _outcome(1), artifact="model.safetensors",  # type: ignore[arg-type]
                            strategy=FEDAVG, new_state={"step": 1})  # fmt: skip
    assert jobs.get("j1") == before and _counts(db) == (0, 0)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"participants": []}, "needs at least one participant"),
        ({"finished_at": T0 - timedelta(days=1)}, "is before started_at"),
        ({"started_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"metrics": {"loss": float("nan")}}, "metric 'loss' must be a finite number"),
        ({"department_metrics": {"credit": {"f1": float("inf")}}}, "must be a finite number"),
        ({"bytes_up": -1}, "bytes_up must be >= 0"),
        ({"round_no": 0}, "round_no must be >= 1"),
        ({"participants": [Participant("a", "d", 1)] * 2}, "listed twice"),
        ({"dropped": ["c1"]}, "must hold DroppedNode"),
    ],
)
def test_bad_outcomes_are_refused(change: dict[str, object], rule: str) -> None:
    fields: dict[str, object] = {
        "round_no": 1, "started_at": T0, "finished_at": T0 + timedelta(seconds=5),
        "participants": [Participant("c1", "credit", 10)],
    }  # fmt: skip
    fields.update(change)
    with pytest.raises(StoreError, match=rule):
        RoundOutcome(**fields)  # type: ignore[arg-type]


def test_participants_are_validated() -> None:
    with pytest.raises(StoreError, match="num_samples must be >= 1"):
        Participant("c1", "credit", 0)
    with pytest.raises(StoreError, match="department must not be empty"):
        Participant("c1", "", 5)


def test_register_uses_the_callers_transaction(
    jobs: JobStore, db: Database, artifacts: ArtifactStore
) -> None:
    _running(jobs)
    registry = ModelRegistry(db)
    art = _artifact(artifacts, 1)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), db.session() as s:
        v = registry.register(
            s, job_id="j1", round_no=1, artifact=art, participants=[Participant("c", "d", 1)],
            strategy=FEDAVG, metrics={}, department_metrics={}, created_at=T0,
        )  # fmt: skip
        assert v.version_id == "credit-risk@v1"
        raise Abort
    assert registry.list() == []
    with pytest.raises(NotFoundError, match="job 'ghost' does not exist"), db.session() as s:
        registry.register(
            s, job_id="ghost", round_no=1, artifact=art, participants=[Participant("c", "d", 1)],
            strategy=FEDAVG, metrics={}, department_metrics={}, created_at=T0,
        )  # fmt: skip


def test_registry_lookups_of_unknown_things(jobs: JobStore, db: Database) -> None:
    registry = ModelRegistry(db)
    with pytest.raises(NotFoundError, match="model version 'x@v1' does not exist"):
        registry.get("x@v1")
    with pytest.raises(NotFoundError, match="job 'nope' does not exist"):
        registry.latest("nope")
    jobs.create("j1", "credit-risk", "", 1)
    with pytest.raises(NotFoundError, match="job 'j1' has no model version yet"):
        registry.latest("j1")


def test_a_new_database_object_sees_jobs_rounds_and_versions(
    db_path: Path, clock: StepClock, artifacts: ArtifactStore
) -> None:
    with Database(sqlite_url(db_path)) as first:
        first.upgrade()
        store = JobStore(first, clock=clock)
        _running(store)
        done = store.complete_round("j1", _outcome(1), artifact=_artifact(artifacts, 1),
                                    strategy=FEDAVG, new_state={"m": [1.5]})  # fmt: skip
        store.start_round("j1", 2)
    with Database(sqlite_url(db_path)) as second:
        again = JobStore(second, clock=clock)
        (job,) = again.resumable_jobs()
        assert (
            job.job_id == "j1" and job.rounds_done == 1 and dict(job.strategy_state) == {"m": [1.5]}
        )
        assert again.rounds("j1")[0] == done.round
        assert again.rounds("j1")[1].status is RoundStatus.RUNNING
        assert ModelRegistry(second).latest("j1") == done.version
        again.fail_round("j1", 2, message="coordinator restarted", retry=True)
        assert again.start_round("j1", 2).attempt == 2
