"""Round engine behaviour over the in-memory gateway: aggregation, stragglers, retries."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from coordinator_support import MemoryLedger

from clawfed.aggregation import FedAvg
from clawfed.coordinator.engine import RoundEngine
from clawfed.coordinator.gateway import TaskKind, TaskOutcome, TaskRequest
from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.memory_gateway import MemoryGateway
from clawfed.coordinator.model_spec import ModelSpec
from clawfed.core import JobError, NodeInfo, Weights


def node(value: float, samples: int, *, delay: float = 0.0, bad: str = "") -> Any:
    async def behave(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
        if request.kind is TaskKind.INIT:
            return TaskOutcome("x", 0, {}, Weights({"w": np.zeros(3, np.float32)}))
        assert weights is not None
        await asyncio.sleep(delay)
        delta = np.full(3, value, np.float32)
        if bad == "nan":
            delta[1] = np.nan
        if bad == "shape":
            delta = np.zeros(4, np.float32)
        return TaskOutcome("x", samples, {"accuracy": value}, Weights({"w": delta}))

    return behave


def spec(**kw: Any) -> JobSpec:
    base: dict[str, Any] = {
        "name": "j",
        "model": ModelSpec(name="noop"),
        "rounds": 1,
        "min_nodes": 2,
        "round_deadline_s": 0.5,
        "max_retries": 1,
    }
    base.update(kw)
    return JobSpec(**base)


def run(gw: MemoryGateway, ledger: MemoryLedger, job: JobSpec) -> str | None:
    engine = RoundEngine(gw, ledger, job_id="job1", spec=job, strategy=FedAvg())
    return asyncio.run(engine.run())


def test_fedavg_weights_by_samples_and_records_participants() -> None:
    gw, ledger = MemoryGateway(), MemoryLedger()
    gw.connect(NodeInfo("a", "信贷部"), node(1.0, 100))
    gw.connect(NodeInfo("b", "合规部"), node(4.0, 300))
    assert run(gw, ledger, spec(rounds=2)) == "job@v2"
    report, weights = ledger.rounds[0]
    np.testing.assert_allclose(weights["w"], np.full(3, (1 * 100 + 4 * 300) / 400))
    np.testing.assert_allclose(ledger.rounds[1][1]["w"], np.full(3, 2 * 3.25))
    assert [(p.node_id, p.department, p.num_samples) for p in report.participants] == [
        ("a", "信贷部", 100),
        ("b", "合规部", 300),
    ]
    assert report.metrics["accuracy"] == pytest.approx(3.25)


def test_straggler_is_dropped_and_round_proceeds() -> None:
    gw, ledger = MemoryGateway(), MemoryLedger()
    gw.connect(NodeInfo("a", "d"), node(1.0, 1))
    gw.connect(NodeInfo("b", "d"), node(3.0, 1))
    gw.connect(NodeInfo("slow", "d"), node(100.0, 1, delay=30))
    run(gw, ledger, spec())
    report, weights = ledger.rounds[0]
    np.testing.assert_allclose(weights["w"], np.full(3, 2.0))
    assert [(d.node_id, d.reason) for d in report.dropped] == [("slow", "straggler")]
    assert [c[0] for c in gw.cancelled] == ["slow"]


def test_bad_updates_are_rejected_with_reasons() -> None:
    gw, ledger = MemoryGateway(), MemoryLedger()
    gw.connect(NodeInfo("a", "d"), node(1.0, 1))
    gw.connect(NodeInfo("b", "d"), node(3.0, 1))
    gw.connect(NodeInfo("n", "d"), node(1.0, 1, bad="nan"))
    gw.connect(NodeInfo("s", "d"), node(1.0, 1, bad="shape"))
    run(gw, ledger, spec())
    report, _ = ledger.rounds[0]
    assert sorted((r.node_id, r.reason) for r in report.rejected) == [
        ("n", "non_finite"),
        ("s", "shape_mismatch"),
    ]


def test_round_retried_then_job_fails_with_reason() -> None:
    gw, ledger = MemoryGateway(), MemoryLedger()
    gw.connect(NodeInfo("a", "d"), node(1.0, 1))
    gw.connect(NodeInfo("slow", "d"), node(1.0, 1, delay=30))
    with pytest.raises(JobError, match=r"round 1 failed after 2 attempt\(s\): only 1 usable"):
        run(gw, ledger, spec(max_retries=1, round_deadline_s=0.2))
    assert len(ledger.failed) == 2
    assert ledger.rounds == []


def test_too_few_nodes_connected_is_a_failed_attempt() -> None:
    gw, ledger = MemoryGateway(), MemoryLedger()
    gw.connect(NodeInfo("a", "d"), node(1.0, 1))
    with pytest.raises(JobError, match="only 1 of min_nodes=2 node"):
        run(gw, ledger, spec(max_retries=0, round_deadline_s=0.1))


def test_resume_continues_after_last_completed_round() -> None:
    gw, ledger = MemoryGateway(), MemoryLedger()
    gw.connect(NodeInfo("a", "d"), node(1.0, 1))
    gw.connect(NodeInfo("b", "d"), node(1.0, 1))
    run(gw, ledger, spec(rounds=2))
    assert run(gw, ledger, spec(rounds=3)) == "job@v3"
    assert [r.round_no for r, _ in ledger.rounds] == [1, 2, 3]
    np.testing.assert_allclose(ledger.rounds[-1][1]["w"], np.full(3, 3.0))


def test_each_update_is_folded_in_and_released_before_the_next_arrives() -> None:
    # The engine folds an update in as the gateway completes it, so no update's memory is
    # still held when the next one is received (a round holds one update, not N).
    import weakref

    earlier: list[weakref.ref[np.ndarray]] = []
    alive_at_arrival: list[int] = []

    def tracked(value: float, delay: float) -> Any:
        async def behave(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
            del weights
            if request.kind is TaskKind.INIT:
                return TaskOutcome("x", 0, {}, Weights({"w": np.zeros(3, np.float32)}))
            if request.kind is not TaskKind.FIT:
                return TaskOutcome("x", 1, {}, None)
            await asyncio.sleep(delay)
            alive_at_arrival.append(sum(r() is not None for r in earlier))
            delta = np.full(3, value, np.float32)
            earlier.append(weakref.ref(delta))
            return TaskOutcome("x", 1, {}, Weights({"w": delta}))

        return behave

    gw, ledger = MemoryGateway(), MemoryLedger()
    for i, value in enumerate([1.0, 2.0, 6.0]):
        gw.connect(NodeInfo(f"n{i}", "d"), tracked(value, 0.02 * (i + 1)))
    run(gw, ledger, spec(min_nodes=3, round_deadline_s=5.0))
    np.testing.assert_allclose(ledger.rounds[0][1]["w"], np.full(3, 3.0))
    assert alive_at_arrival == [0, 0, 0]
    assert all(r() is None for r in earlier)
