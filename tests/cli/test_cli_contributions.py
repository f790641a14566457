"""``clawfed contributions JOB``: per-department weights, LOO and Shapley from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_registry_support import (
    NOOP_SPEC,
    RoundInput,
    add_job,
    invoke,
    make_workspace,
    noop_weights,
    run_main,
    table_rows,
)

from clawfed.coordinator.workspace import Workspace
from clawfed.governance import ArtifactStore, JobStore, Participant, RoundOutcome, StrategyInfo
from clawfed.governance.rounds import ContributionEntry, ContributionStore


def _entry(n: int, node: str, dept: str, share: float, **kw: object) -> ContributionEntry:
    base: dict[str, object] = {
        "round_no": n, "node_id": node, "department": dept, "num_samples": 100,
        "weight": 100.0 * share, "share": share, "action": "kept",
    }  # fmt: skip
    return ContributionEntry(**(base | kw))  # type: ignore[arg-type]


def _workspace(tmp_path: Path) -> Workspace:
    ws = make_workspace(tmp_path)
    with ws.database() as db:
        store = ContributionStore(db)
        # written before the rounds complete, as the engine does
        add_job(ws, "fraud", NOOP_SPEC.format(name="fraud", rounds=3), [])
        store.record_round("fraud", 1, {}, [
            _entry(1, "c1", "信贷部", 0.6, loo=0.04, shapley=0.05),
            _entry(1, "a1", "审计部", 0.4, loo=0.01, shapley=0.02),
            _entry(1, "z1", "合规部", 0.0, weight=0.0, action="rejected",
                   free_rider="copy_global", loo=0.0, shapley=0.0),
        ])  # fmt: skip
        store.record_round("fraud", 2, {}, [
            _entry(2, "c1", "信贷部", 0.5), _entry(2, "a1", "审计部", 0.5),
        ])  # fmt: skip
    _complete(ws, 2)
    return ws


def _complete(ws: Workspace, rounds: int) -> None:
    """Complete the stored job's first ``rounds`` rounds (through JobStore)."""
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    with ws.database() as db:
        jobs = JobStore(db)
        store = ArtifactStore(ws.artifacts / "fraud")
        for i in range(1, rounds + 1):
            artifact = store.save(noop_weights([i, i]), f"round-{i:05d}", {})
            outcome = RoundOutcome(
                round_no=i,
                started_at=t0 + timedelta(minutes=i),
                finished_at=t0 + timedelta(minutes=i, seconds=5),
                participants=[Participant("c1", "信贷部", 100)],
            )
            jobs.complete_round(
                "fraud", outcome, artifact=artifact, strategy=StrategyInfo("fedavg", {}),
                new_state={},
            )  # fmt: skip


def test_contributions_table_per_department_and_per_round(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    result = invoke(ws, "contributions", "fraud")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    summary = {r[0]: r for r in rows if len(r) == 7}
    assert summary["信贷部"][1:6] == ["2", "1", "+0.0400", "+0.0500", "55.0%"]
    assert summary["审计部"][3:5] == ["+0.0100", "+0.0200"]
    assert summary["合规部"][6] == "1 (1 excl.)"
    per_round = [r for r in rows if len(r) == 10]
    assert [(r[0], r[2], r[6], r[7]) for r in per_round] == [
        ("1", "a1", "kept", "—"),
        ("1", "c1", "kept", "—"),
        ("1", "z1", "rejected", "copy_global"),
        ("2", "a1", "kept", "—"),
        ("2", "c1", "kept", "—"),
    ]
    assert per_round[3][8:] == ["—", "—"]  # not measured in round 2


def test_contributions_of_one_department_without_rounds(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    result = invoke(ws, "contributions", "fraud", "--department", "审计部", "--no-rounds")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert [r[0] for r in rows] == ["审计部"]


def test_contributions_of_a_job_with_nothing_recorded(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    add_job(ws, "empty", NOOP_SPEC.format(name="empty", rounds=1), [RoundInput(
        noop_weights([1.0]), [("c1", "信贷部", 10)])])  # fmt: skip
    result = invoke(ws, "contributions", "empty")
    assert result.exit_code == 0
    assert "job empty: no contribution recorded yet" in result.output


def test_contributions_of_an_unknown_job_is_a_clear_error(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    code, _, err = run_main("contributions", "nope", "-w", str(ws.root))
    assert code == 2
    assert "no job 'nope'; known jobs: fraud" in err
