"""Secure and DP rounds over the in-memory gateway: sums, dropouts per phase, ε and budget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from coordinator_support import MemoryLedger

from clawfed.aggregation import FedAvg, build_strategy
from clawfed.coordinator.engine import RoundEngine
from clawfed.coordinator.gateway import FailureCode, TaskFailed, TaskKind, TaskOutcome, TaskRequest
from clawfed.coordinator.jobspec import JobSpec, parse_job
from clawfed.coordinator.memory_gateway import MemoryGateway
from clawfed.core import ConfigError, JobError, NodeInfo, Weights
from clawfed.node.runner import FitAnswer
from clawfed.node.secure_tasks import SecureTasks
from clawfed.privacy.accountant import epsilon_spent
from clawfed.privacy.errors import BudgetExceeded
from clawfed.privacy.secagg_wire import SecureKey, SecureStep

SIZE = 64


def delta_of(seed: int, scale: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-scale, scale, SIZE).astype(np.float32)


class SimNode:
    """A node in this process: ``SecureTasks`` around a fit that returns a known delta.

    ``die_at``: from this phase on the node is gone (its task fails as a lost stream would).
    """

    def __init__(
        self, node_id: str, seed: int, samples: int, *, die_at: TaskKind | None = None
    ) -> None:
        self.node_id = node_id
        self.delta = delta_of(seed)
        self.samples = samples
        self.die_at = die_at
        self.dead = False
        self.tasks = SecureTasks(self.fit)
        self.configs: list[Mapping[str, Any]] = []

    def fit(self, config: Mapping[str, Any], weights: Weights) -> FitAnswer:
        del config, weights
        return FitAnswer(self.samples, {"loss": float(self.samples)}, Weights({"w": self.delta}))

    async def __call__(self, request: TaskRequest, weights: Weights | None) -> TaskOutcome:
        if request.kind is TaskKind.INIT:
            return TaskOutcome(self.node_id, 0, {}, Weights({"w": np.zeros(SIZE, np.float32)}))
        if request.kind is self.die_at or self.dead:
            self.dead = True
            raise TaskFailed(self.node_id, FailureCode.DISCONNECTED, "the node was killed")
        self.configs.append(dict(request.config))
        if request.kind is TaskKind.FIT:
            assert weights is not None
            fit = self.fit(request.config, weights)
            return TaskOutcome(self.node_id, fit.num_samples, fit.metrics, fit.delta)
        answer = self.tasks.run(SecureStep(request.kind.value), request.config, weights)
        return TaskOutcome(self.node_id, answer.num_samples, answer.metrics, answer.payload)


def job(privacy: str, *, rounds: int = 1, min_nodes: int = 2, strategy: str = "fedavg") -> JobSpec:
    return parse_job(
        f"name: j\nmodel: {{name: noop, settings: {{params: {SIZE}}}}}\nrounds: {rounds}\n"
        f"min_nodes: {min_nodes}\nround_deadline_s: 5\nmax_retries: 0\nevaluate_every: 0\n"
        f"strategy: {{name: {strategy}}}\nprivacy:\n{privacy}"
    )


SECAGG = "  secure_aggregation: {threshold_fraction: 0.6, clip: 1.0, frac_bits: 20}\n"


def federation(
    n: int, *, die: Mapping[int, TaskKind] | None = None
) -> tuple[MemoryGateway, list[SimNode]]:
    gw = MemoryGateway()
    nodes = [
        SimNode(f"n{i}", seed=i, samples=10 * (i + 1), die_at=(die or {}).get(i)) for i in range(n)
    ]
    for node in nodes:
        gw.connect(NodeInfo(node.node_id, f"dept-{node.node_id}"), node)
    return gw, nodes


def run(
    gw: MemoryGateway, ledger: MemoryLedger, spec: JobSpec, events: list[Any] | None = None
) -> Any:
    def sink(kind: str, data: Mapping[str, Any]) -> None:
        if events is not None:
            events.append((kind, dict(data)))

    strategy = build_strategy(spec.strategy.name, spec.strategy.settings)
    engine = RoundEngine(gw, ledger, job_id="job1", spec=spec, strategy=strategy, events=sink)
    return asyncio.run(asyncio.wait_for(engine.run(), 60))


def fedavg(nodes: list[SimNode]) -> np.ndarray:
    total = sum(n.samples * n.delta.astype(np.float64) for n in nodes)
    return np.asarray(total / sum(n.samples for n in nodes))


def bound(nodes: list[SimNode], frac_bits: int = 20) -> float:
    """Quantization error of the weighted mean (plus float32 rounding)."""
    return len(nodes) * 0.5 / 2**frac_bits / sum(n.samples for n in nodes) * 60 + 1e-6


def test_secure_sum_equals_plain_fedavg_within_the_quantization_bound() -> None:
    gw, nodes = federation(4)
    ledger = MemoryLedger()
    run(gw, ledger, job(SECAGG))
    report, weights = ledger.rounds[0]
    np.testing.assert_allclose(weights["w"], fedavg(nodes), rtol=0, atol=bound(nodes))
    assert [(p.node_id, p.num_samples) for p in report.participants] == [
        ("n0", 10), ("n1", 20), ("n2", 30), ("n3", 40),
    ]  # fmt: skip
    plain_gw, plain_nodes = federation(4)
    plain = MemoryLedger()
    plain_spec = job(SECAGG).model_copy(update={"privacy": None})
    asyncio.run(RoundEngine(plain_gw, plain, job_id="p", spec=plain_spec, strategy=FedAvg()).run())
    np.testing.assert_allclose(weights["w"], plain.rounds[0][1]["w"], rtol=0, atol=bound(nodes))


def test_secagg_plus_neighbourhoods_sum_correctly() -> None:
    gw, nodes = federation(9)
    ledger = MemoryLedger()
    run(
        gw,
        ledger,
        job("  secure_aggregation: {variant: secagg_plus, neighbours: 4, frac_bits: 20}\n"),
    )
    np.testing.assert_allclose(ledger.rounds[0][1]["w"], fedavg(nodes), atol=bound(nodes))
    cfg = nodes[0].configs[0][SecureKey.CONFIG]
    assert '"neighbours":4' in cfg and '"threshold":4' in cfg  # 2/3 of 5 holders


@pytest.mark.parametrize(
    ("phase", "counted"),
    [
        (TaskKind.SECAGG_ADVERTISE, False),
        (TaskKind.SECAGG_SHARE, False),
        (TaskKind.SECAGG_MASK, False),
        (TaskKind.SECAGG_UNMASK, True),  # its masked input is in; its self mask is removed
    ],
)
def test_up_to_n_minus_t_dropouts_in_any_phase_still_give_the_right_sum(
    phase: TaskKind, counted: bool
) -> None:
    gw, nodes = federation(5, die={1: phase, 3: phase})  # n=5, t=3: two may drop
    ledger = MemoryLedger()
    run(gw, ledger, job(SECAGG))
    report, weights = ledger.rounds[0]
    alive = [n for i, n in enumerate(nodes) if counted or i not in (1, 3)]
    np.testing.assert_allclose(weights["w"], fedavg(alive), atol=bound(alive))
    assert [p.node_id for p in report.participants] == [n.node_id for n in alive]
    assert sorted((d.node_id, d.reason) for d in report.dropped) == [
        ("n1", f"{phase.value}: disconnected"),
        ("n3", f"{phase.value}: disconnected"),
    ]


@pytest.mark.parametrize("phase", [TaskKind.SECAGG_SHARE, TaskKind.SECAGG_UNMASK])
def test_more_than_n_minus_t_dropouts_fail_the_round_with_the_reason(phase: TaskKind) -> None:
    gw, _ = federation(5, die={0: phase, 2: phase, 4: phase})
    ledger = MemoryLedger()
    with pytest.raises(JobError, match=r"too many clients dropped out") as err:
        run(gw, ledger, job(SECAGG))
    assert f"secure aggregation failed in phase {phase.value}" in str(err.value)
    assert "threshold is 3" in str(err.value)
    assert ledger.rounds == []
    [(report, reason)] = ledger.failed
    assert reason in str(err.value)
    assert report.participants == ()


def test_coordinator_events_and_logs_hold_no_individual_update(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gw, nodes = federation(3)
    events: list[Any] = []
    with caplog.at_level(logging.DEBUG):
        run(gw, MemoryLedger(), job(SECAGG), events)
    needles = [n.delta.tobytes()[:16] for n in nodes] + [repr(float(n.delta[0])) for n in nodes]
    texts = [r.getMessage() for r in caplog.records] + [repr(e) for e in events]
    for text in texts:
        for needle in needles:
            assert str(needle) not in text
    phases = [e[1]["phase"] for e in events if e[0] == "secagg_phase"]
    assert phases == ["secagg_advertise", "secagg_share", "secagg_mask", "secagg_unmask"]
    for kind, data in events:
        for value in data.values():
            assert not isinstance(value, np.ndarray | Weights), kind


def test_robust_strategy_is_refused_with_secure_aggregation() -> None:
    with pytest.raises(ConfigError, match=r"strategy 'krum' needs each node's individual update"):
        job(SECAGG, strategy="krum")


def test_threshold_above_participants_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"threshold=4 is more than the 3 participants"):
        parse_job(
            "name: j\nmodel: {name: noop}\nrounds: 1\nmin_nodes: 2\nparticipants: [a, b, c]\n"
            "privacy:\n  secure_aggregation: {threshold: 4}\n"
        )


def test_central_dp_records_epsilon_per_version() -> None:
    gw, _ = federation(3)
    ledger = MemoryLedger()
    spec = job(
        SECAGG + "  dp: {mode: central, clip_norm: 1.0, delta: 1.0e-5, target_epsilon: 20}\n",
        rounds=3,
    )
    run(gw, ledger, spec)
    assert spec.privacy is not None and spec.privacy.dp is not None
    sigma = spec.privacy.dp.sigma(3)
    eps = [r.metrics["privacy.epsilon"] for r, _ in ledger.rounds]
    assert eps == [pytest.approx(epsilon_spent(sigma, 1e-5, k)) for k in (1, 2, 3)]
    assert eps[0] < eps[1] < eps[2] <= 20
    assert ledger.rounds[0][0].metrics["privacy.noise_multiplier"] == pytest.approx(sigma)


def test_job_stops_before_a_round_would_exceed_the_budget() -> None:
    gw, nodes = federation(3)
    ledger = MemoryLedger()
    sigma = 1.0
    fits = [k for k in range(1, 6) if epsilon_spent(sigma, 1e-5, k) <= 8.0]
    spec = job(
        SECAGG + f"  dp: {{clip_norm: 1.0, noise_multiplier: {sigma}, target_epsilon: 8.0}}\n",
        rounds=5,
    )
    with pytest.raises(BudgetExceeded, match=rf"round {len(fits) + 1} would spend") as err:
        run(gw, ledger, spec)
    assert "target ε=8" in str(err.value)
    assert len(ledger.rounds) == len(fits) < 5
    asked = {c[SecureKey.NODE_ID] for n in nodes for c in n.configs}
    assert asked == {"n0", "n1", "n2"}
    assert all(r.metrics["privacy.epsilon"] <= 8.0 for r, _ in ledger.rounds)


def test_distributed_dp_nodes_add_their_share_of_the_noise() -> None:
    gw, nodes = federation(4)
    for node in nodes:
        node.delta = np.zeros(SIZE, np.float32)
    ledger = MemoryLedger()
    spec = job(
        "  secure_aggregation: {threshold: 3, clip: 4.0, frac_bits: 16}\n"
        "  dp: {mode: distributed, clip_norm: 0.5, noise_multiplier: 2.0}\n"
    )
    run(gw, ledger, spec)
    stds = {
        c[SecureKey.DP_NOISE_STD] for n in nodes for c in n.configs if SecureKey.DP_NOISE_STD in c
    }
    assert len(stds) == 1
    assert stds.pop() == pytest.approx(2.0 * 0.5 / np.sqrt(3))
    mean = ledger.rounds[0][1]["w"].astype(np.float64)
    assert np.all(np.abs(mean) < 4.0)
    assert 0.0 < float(np.std(mean)) < 2.0  # noise of std sqrt(4/3)·σC/4 ≈ 0.29 per coordinate
    assert ledger.rounds[0][0].participants[0].metrics == {}  # DP: no per-node metrics


def test_dp_without_secure_aggregation_clips_each_update_at_the_coordinator() -> None:
    gw, nodes = federation(2)
    nodes[0].delta = np.full(SIZE, 100.0, np.float32)
    nodes[1].delta = np.zeros(SIZE, np.float32)
    ledger = MemoryLedger()
    run(gw, ledger, job("  dp: {mode: central, clip_norm: 1.0, noise_multiplier: 0.001}\n"))
    mean = ledger.rounds[0][1]["w"].astype(np.float64)
    np.testing.assert_allclose(mean, np.full(SIZE, 0.5 / np.sqrt(SIZE)), atol=0.01)


def test_fedadam_server_step_applies_to_the_secure_mean_as_to_plain_updates() -> None:
    secure_gw, nodes = federation(3)
    secure = MemoryLedger()
    run(secure_gw, secure, job(SECAGG, rounds=2, strategy="fedadam"))
    plain_gw, _ = federation(3)
    plain = MemoryLedger()
    plain_spec = job(SECAGG, rounds=2, strategy="fedadam").model_copy(update={"privacy": None})
    run(plain_gw, plain, plain_spec)
    for (_, w_secure), (_, w_plain) in zip(secure.rounds, plain.rounds, strict=True):
        np.testing.assert_allclose(w_secure["w"], w_plain["w"], rtol=0, atol=1e-4)
    assert not np.allclose(secure.rounds[0][1]["w"], fedavg(nodes))  # Adam's step, not the mean
