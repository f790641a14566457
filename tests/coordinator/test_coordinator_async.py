"""FedBuff asynchronous rounds over the in-memory gateway: staleness, slow nodes, stopping."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from clawfed.coordinator.async_engine import (
    AsyncRoundEngine,
    BufferWeighting,
    FedBuffBuffer,
    FedBuffSettings,
    staleness_weight,
)
from clawfed.coordinator.gateway import FailureCode, TaskFailed, TaskKind, TaskOutcome, TaskRequest
from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.memory_gateway import MemoryGateway
from clawfed.coordinator.model_spec import ModelSpec
from clawfed.coordinator.round_records import Progress, RoundReport
from clawfed.core import ConfigError, JobError, NodeInfo, Update, Weights


class _Ledger:
    def __init__(self, rounds_done: int = 0, weights: Weights | None = None) -> None:
        self.initial: Weights | None = weights
        self.done = rounds_done
        self.rounds: list[tuple[RoundReport, Weights, Mapping[str, Any]]] = []
        self.failed: list[tuple[RoundReport, str]] = []

    def progress(self, job_id: str) -> Progress:
        del job_id
        w = self.rounds[-1][1] if self.rounds else self.initial
        return Progress(self.done + len(self.rounds), w, {})

    def save_initial(self, job_id: str, weights: Weights, source_node: str) -> None:
        del job_id, source_node
        self.initial = weights

    def complete_round(
        self,
        report: RoundReport,
        weights: Weights,
        strategy_state: Mapping[str, Any],
        state_arrays: Weights | None = None,
    ) -> str:
        assert state_arrays is None  # FedBuff keeps no model-sized state
        self.rounds.append((report, weights, strategy_state))
        return f"job@v{self.done + len(self.rounds)}"

    def record_failed_attempt(
        self, report: RoundReport, reason: str, *, final: bool = False
    ) -> None:
        del final
        self.failed.append((report, reason))


def _w(v: float) -> Weights:
    return Weights({"w": np.full(2, v, np.float64)})


def _node(
    value: float, delay: float, gate: asyncio.Event | None = None, fail_first: int = 0
) -> Any:
    calls = {"n": 0}

    async def behave(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
        if request.kind is TaskKind.INIT:
            return TaskOutcome("x", 0, {}, _w(0.0))
        assert weights is not None and request.expected == weights.spec()
        calls["n"] += 1
        if calls["n"] <= fail_first:
            raise TaskFailed("x", FailureCode.NODE_ERROR, "disk full")
        if gate is not None:
            await asyncio.wait_for(gate.wait(), 10.0)
        await asyncio.sleep(delay)
        return TaskOutcome("x", 10, {"loss": value}, _w(value))

    return behave


def _spec(rounds: int, **kw: Any) -> JobSpec:
    base: dict[str, Any] = {
        "name": "async",
        "model": ModelSpec(name="noop"),
        "rounds": rounds,
        "min_nodes": 1,
        "round_deadline_s": 5.0,
        "max_retries": 1,
    }
    return JobSpec(**(base | kw))


def test_staleness_weight_and_buffer_math_hand_computed() -> None:
    assert staleness_weight(0, 0.5) == 1.0
    assert staleness_weight(3, 0.5) == pytest.approx(0.5)
    assert staleness_weight(8, 1.0) == pytest.approx(1 / 9)
    with pytest.raises(ConfigError, match="staleness"):
        staleness_weight(-1, 0.5)
    g = _w(10.0)
    buf = FedBuffBuffer(g, FedBuffSettings(buffer_size=2, server_lr=2.0))
    buf.add(Update("a", 1, _w(1.0)), base_version=5, version=5)  # fresh: weight 1
    e = buf.add(Update("b", 3, _w(4.0)), base_version=2, version=5)  # staleness 3: 1/2
    assert e.staleness == 3 and e.staleness_weight == pytest.approx(0.5)
    # uniform: (1·1 + 0.5·4) / 2 = 1.5; server_lr 2 → +3
    np.testing.assert_allclose(buf.result()["w"], [13.0, 13.0])
    samples = FedBuffBuffer(g, FedBuffSettings(weighting=BufferWeighting.SAMPLES))
    samples.add(Update("a", 1, _w(1.0)), 5, 5)
    samples.add(Update("b", 3, _w(4.0)), 2, 5)
    # by samples: (1·1·1 + 3·0.5·4) / (1 + 3) = 7/4
    np.testing.assert_allclose(samples.delta()["w"], [1.75, 1.75])
    with pytest.raises(JobError, match="future version"):
        samples.add(Update("c", 1, _w(0.0)), 9, 5)


def _run(engine: AsyncRoundEngine) -> str | None:
    return asyncio.run(engine.run())


def test_slow_node_never_holds_back_the_fast_ones_and_counts_less() -> None:
    async def scenario() -> tuple[AsyncRoundEngine, _Ledger, MemoryGateway, str | None]:
        gate = asyncio.Event()
        fast1_done = [0]

        def events(kind: str, data: Mapping[str, Any]) -> None:
            # the slow node is 10× slower: it answers when fast1 has delivered 10 updates
            if kind == "update_buffered" and data["node_id"] == "fast1":
                fast1_done[0] += 1
                if fast1_done[0] >= 10:
                    gate.set()

        gw, ledger = MemoryGateway(), _Ledger()
        gw.connect(NodeInfo("fast1", "信贷部"), _node(1.0, 0.001))
        gw.connect(NodeInfo("fast2", "合规部"), _node(2.0, 0.001))
        gw.connect(NodeInfo("slow", "审计部"), _node(10.0, 0.0, gate))
        settings = FedBuffSettings(buffer_size=2, server_lr=1.0)
        engine = AsyncRoundEngine(
            gw, ledger, job_id="j", spec=_spec(14), settings=settings, events=events
        )
        return engine, ledger, gw, await engine.run()

    engine, ledger, gw, last = asyncio.run(scenario())
    assert last == "job@v14" and len(ledger.rounds) == 14  # stops after 14 aggregations
    hist = engine.history()
    assert [h.version for h in hist] == list(range(1, 15))
    arrival = next(i for i, h in enumerate(hist) if "slow" in {u.node_id for u in h.updates})
    assert arrival >= 5  # fast1's 10 updates alone fill 5 buffers of 2
    for h in hist[:arrival]:  # versions before it came from the fast nodes, fresh
        assert {u.node_id for u in h.updates} <= {"fast1", "fast2"}
        assert all(u.staleness == 0 for u in h.updates)
    first = next(u for u in hist[arrival].updates if u.node_id == "slow")
    assert first.base_version == 0 and first.staleness == arrival
    assert first.staleness_weight == pytest.approx(1 / math.sqrt(1 + first.staleness))
    # every version is the previous one plus the staleness-weighted mean, by hand:
    value = {"fast1": 1.0, "fast2": 2.0, "slow": 10.0}
    w = 0.0
    for h, (report, weights, state) in zip(hist, ledger.rounds, strict=True):
        assert len(h.updates) == 2 and state == {"mode": "fedbuff"}
        w += sum(value[u.node_id] * u.staleness_weight for u in h.updates) / 2
        np.testing.assert_allclose(weights["w"], [w, w])
        assert report.round_no == h.version
        assert {p.node_id for p in report.participants} == {u.node_id for u in h.updates}
        assert report.metrics["staleness_max"] == max(u.staleness for u in h.updates)
    assert {nid for nid, _ in gw.cancelled} <= {"fast1", "fast2", "slow"}


def test_too_stale_updates_are_dropped_and_failed_nodes_are_retried() -> None:
    async def scenario() -> tuple[AsyncRoundEngine, _Ledger]:
        gate = asyncio.Event()

        def events(kind: str, data: Mapping[str, Any]) -> None:
            if kind == "round_completed" and data["round"] >= 3:
                gate.set()

        gw, ledger = MemoryGateway(), _Ledger()
        gw.connect(NodeInfo("flaky", "b"), _node(1.0, 0.002, fail_first=2))
        gw.connect(NodeInfo("slow", "c"), _node(10.0, 0.0, gate))
        settings = FedBuffSettings(buffer_size=1, max_staleness=1, retry_after_s=0.01)
        engine = AsyncRoundEngine(
            gw, ledger, job_id="j", spec=_spec(8), settings=settings, events=events
        )
        await engine.run()
        return engine, ledger

    engine, ledger = asyncio.run(scenario())
    assert len(ledger.rounds) == 8
    dropped = [(d.node_id, d.reason) for r, _, _ in ledger.rounds for d in r.dropped]
    assert ("slow", "stale") in dropped
    assert dropped.count(("flaky", "node_error")) == 2  # retried until it answered
    assert [d.reason for d in ledger.rounds[0][0].dropped] == ["node_error", "node_error"]
    assert "flaky" in {u.node_id for h in engine.history() for u in h.updates}
    assert all(u.staleness <= 1 for h in engine.history() for u in h.updates)


def test_resumes_after_a_restart_and_stops_when_done() -> None:
    gw = MemoryGateway()
    gw.connect(NodeInfo("a", "d"), _node(1.0, 0.001))
    ledger = _Ledger(rounds_done=3, weights=_w(5.0))
    engine = AsyncRoundEngine(
        gw, ledger, job_id="j", spec=_spec(5), settings=FedBuffSettings(buffer_size=1)
    )
    assert _run(engine) == "job@v5"
    assert [r.round_no for r, _, _ in ledger.rounds] == [4, 5]
    np.testing.assert_allclose(ledger.rounds[-1][1]["w"], [7.0, 7.0])
    done = AsyncRoundEngine(
        gw,
        _Ledger(rounds_done=5, weights=_w(0.0)),
        job_id="j",
        spec=_spec(5),
        settings=FedBuffSettings(),
    )
    assert _run(done) is None


def test_a_job_with_no_answering_node_fails_after_the_stall_timeout() -> None:
    async def never(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
        if request.kind is TaskKind.INIT:
            return TaskOutcome("x", 0, {}, _w(0.0))
        del weights
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    gw, ledger = MemoryGateway(), _Ledger()
    gw.connect(NodeInfo("mute", "d"), never)
    settings = FedBuffSettings(buffer_size=1, stall_timeout_s=0.2, retry_after_s=0.05)
    engine = AsyncRoundEngine(
        gw, ledger, job_id="j", spec=_spec(2, round_deadline_s=0.1), settings=settings
    )
    with pytest.raises(JobError, match="no update accepted"):
        _run(engine)
    assert ledger.failed and "no update accepted" in ledger.failed[0][1]
    assert ("mute", "straggler") in {(d.node_id, d.reason) for d in ledger.failed[0][0].dropped}
    assert gw.cancelled


def test_fedbuff_settings_from_a_job_file_with_specific_errors() -> None:
    s = FedBuffSettings.from_job({"buffer_size": 4, "weighting": "samples", "server_lr": 1})
    assert (s.buffer_size, s.weighting, s.server_lr) == (4, BufferWeighting.SAMPLES, 1.0)
    with pytest.raises(ConfigError, match="buffer_size: input should be greater than or equal"):
        FedBuffSettings.from_job({"buffer_size": 0})
    with pytest.raises(ConfigError, match="staleness: unknown setting"):
        FedBuffSettings.from_job({"staleness": 2})
