"""Aggregation through the round engine (memory gateway): strategies, weighting, free riders,
contributions, anomaly attribution and compression, end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from coordinator_support import MemoryLedger

from clawfed.aggregation import build_strategy
from clawfed.aggregation.quality_weighted import NodeFact
from clawfed.chat.notices import RoundDeviations
from clawfed.chat.templates import Fmt, Lang, render
from clawfed.coordinator.engine import RoundEngine
from clawfed.coordinator.gateway import TaskKind, TaskOutcome, TaskRequest
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.memory_gateway import MemoryGateway
from clawfed.coordinator.round_extras import AUDIT_ACTION
from clawfed.core import NodeInfo, Weights
from clawfed.wire.codecs import UpdateCompressor

D = 400
TARGET = np.linspace(-1.0, 1.0, D)


def accuracy(w: np.ndarray) -> float:
    """A holdout score in (0, 1]: 1 at the target, 0.5 at the initial zeros."""
    d = np.linalg.norm(w - TARGET) / np.linalg.norm(TARGET)
    return float(1.0 / (1.0 + d**2))


def behaviour(
    kind: str = "honest",
    samples: int = 100,
    *,
    seed: int = 0,
    configs: list[dict[str, Any]] | None = None,
    attack_from: int = 1,
) -> Any:
    """A simulated department: honest, copy (sends zeros), noise, attack, or replay."""
    rng = np.random.default_rng(seed)
    compressor = UpdateCompressor()
    sent: list[np.ndarray] = []

    async def behave(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
        if request.kind is TaskKind.INIT:
            return TaskOutcome("x", 0, {}, Weights({"w": np.zeros(D, np.float32)}))
        assert weights is not None
        w = np.asarray(weights["w"], dtype=np.float64)
        if request.kind is TaskKind.EVALUATE:
            return TaskOutcome("x", 50, {"accuracy": accuracy(w)}, None)
        if configs is not None:
            configs.append(dict(request.config))
        honest = 0.5 * (TARGET - w) + 0.02 * rng.normal(size=D)
        delta = honest
        if kind == "copy":
            delta = np.zeros(D)
        elif kind == "noise":
            delta = rng.normal(size=D) * float(np.linalg.norm(honest)) / np.sqrt(D)
        elif kind == "attack" and request.round_no >= attack_from:
            delta = -6.0 * (TARGET - w)
        elif kind == "replay":
            delta = sent[0] if sent else honest
        sent.append(delta)
        wire = compressor.encode(
            request.job_id, request.config, Weights({"w": delta.astype(np.float32)})
        )
        loss = {"loss": float(np.mean(delta**2))}
        return TaskOutcome("x", samples, loss, wire, bytes_up=wire.nbytes)

    return behave


def job(extra: str = "", *, rounds: int = 2, nodes: int = 3) -> Any:
    text = (
        f"name: agg\nmodel: {{name: noop}}\nrounds: {rounds}\nmin_nodes: {nodes}\n"
        f"round_deadline_s: 5\nmax_retries: 0\n{extra}"
    )
    return parse_job(text)


def run(
    gw: MemoryGateway,
    spec: Any,
    *,
    facts: Mapping[str, NodeFact] | None = None,
    events: list[tuple[str, Mapping[str, Any]]] | None = None,
    audit: list[tuple[str, list[str], Mapping[str, Any]]] | None = None,
) -> MemoryLedger:
    ledger = MemoryLedger(fail_fast=True)
    strategy = build_strategy(spec.strategy.name, spec.strategy.settings)
    engine = RoundEngine(
        gw,
        ledger,
        job_id="agg",
        spec=spec,
        strategy=strategy,
        events=(lambda k, d: events.append((k, d))) if events is not None else None or _drop,
        facts=None if facts is None else facts.get,
        audit=None if audit is None else (lambda a, d, x: audit.append((a, list(d), x))),
    )
    asyncio.run(engine.run())
    return ledger


def _drop(kind: str, data: Mapping[str, Any]) -> None:
    del kind, data


def connect(gw: MemoryGateway, **nodes: Any) -> None:
    for i, (name, b) in enumerate(nodes.items()):
        gw.connect(
            NodeInfo(name, f"dept-{name}"), b if not isinstance(b, str) else behaviour(b, seed=i)
        )


STRATEGIES = [
    "{name: fedavg}",
    "{name: fedavgm, settings: {server_lr: 1.0, momentum: 0.5}}",
    "{name: fedprox, settings: {proximal_mu: 0.1}}",
    "{name: fedadam, settings: {server_lr: 0.1}}",
    "{name: fedyogi, settings: {server_lr: 0.1}}",
    "{name: fedadagrad, settings: {server_lr: 0.1}}",
    "{name: median}",
    "{name: trimmed_mean, settings: {beta: 0.2}}",
    "{name: krum, settings: {f: 1}}",
    "{name: multi_krum, settings: {f: 1, m: 3}}",
    "{name: norm_bounding, settings: {max_norm: 100.0}}",
    "{name: quality_weighted}",
]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_runs_through_the_engine_and_improves_the_model(strategy: str) -> None:
    gw = MemoryGateway()
    configs: list[dict[str, Any]] = []
    for i in range(5):
        gw.connect(NodeInfo(f"n{i}", f"d{i}"), behaviour(seed=i, configs=configs))
    ledger = run(gw, job(f"strategy: {strategy}\n", rounds=3, nodes=5))
    assert len(ledger.rounds) == 3
    accs = [r.metrics["accuracy"] for r, _ in ledger.rounds]
    assert accs[-1] > accs[0] > 0.0
    assert len(configs) == 15
    if "fedprox" in strategy:  # μ reaches every node's training loop through its fit config
        assert {c["proximal_mu"] for c in configs} == {0.1}
    else:
        assert not any("proximal_mu" in c for c in configs)
    details = ledger.rounds[-1][0].details
    assert details is not None and len(details.weights) == 5


def test_fedavg_through_the_engine_equals_the_sample_weighted_mean() -> None:
    gw = MemoryGateway()
    connect(gw, a=behaviour(samples=100, seed=1), b=behaviour(samples=300, seed=2))
    ledger = run(gw, job(rounds=1, nodes=2))
    report, weights = ledger.rounds[0]
    assert report.details is not None
    shares = {w.node_id: w.share for w in report.details.weights}
    assert shares == pytest.approx({"a": 0.25, "b": 0.75})


def test_quality_and_contribution_weighting_published_per_round_and_audited() -> None:
    gw = MemoryGateway()
    connect(gw, good=behaviour(samples=100, seed=1), poor=behaviour(samples=100, seed=2))
    facts = {
        "good": NodeFact(num_samples=100, quality=1.0, contribution=0.0),
        "poor": NodeFact(num_samples=40, quality=0.5, contribution=0.0),
    }
    audit: list[tuple[str, list[str], Mapping[str, Any]]] = []
    spec = job("weighting: {samples: 1.0, quality: 2.0, contribution: 0.0}\n", rounds=1, nodes=2)
    ledger = run(gw, spec, facts=facts, audit=audit)
    report, _ = ledger.rounds[0]
    assert report.details is not None
    by_node = {w.node_id: w for w in report.details.weights}
    # good: 100 · 1² = 100; poor: min(100, 40 registered rows) · 0.5² = 10
    assert by_node["good"].weight == pytest.approx(100.0)
    assert by_node["poor"].weight == pytest.approx(10.0)
    assert by_node["poor"].share == pytest.approx(10 / 110)
    parts = by_node["poor"].parts
    assert parts is not None and (parts.num_samples, parts.quality_term) == (40, 0.25)
    [(action, depts, detail)] = audit
    assert action == AUDIT_ACTION and depts == ["dept-good", "dept-poor"]
    assert {w["node_id"]: w["weight"] for w in detail["weights"]} == pytest.approx(
        {"good": 100.0, "poor": 10.0}
    )
    assert detail["weights"][1]["parts"]["quality"] == 0.5


def test_weighting_changes_the_aggregate_as_published() -> None:
    spec = job("weighting: {samples: 0.0, quality: 1.0}\n", rounds=1, nodes=2)
    facts = {
        "a": NodeFact(num_samples=10, quality=0.9, contribution=0.0),
        "b": NodeFact(num_samples=10, quality=0.1, contribution=0.0),
    }
    deltas: dict[str, np.ndarray] = {}

    def fixed(node: str, value: float) -> Any:
        async def behave(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
            if request.kind is TaskKind.INIT:
                return TaskOutcome(node, 0, {}, Weights({"w": np.zeros(D, np.float32)}))
            assert weights is not None
            if request.kind is TaskKind.EVALUATE:
                return TaskOutcome(node, 5, {"accuracy": 0.5}, None)
            deltas[node] = np.full(D, value, np.float32)
            return TaskOutcome(node, 10, {}, Weights({"w": deltas[node]}))

        return behave

    gw = MemoryGateway()
    connect(gw, a=fixed("a", 1.0), b=fixed("b", 11.0))
    ledger = run(gw, spec, facts=facts)
    _, weights = ledger.rounds[0]
    np.testing.assert_allclose(weights["w"], np.full(D, 0.9 * 1 + 0.1 * 11.0), rtol=1e-5)


@pytest.mark.parametrize("policy", ["flag", "downweight", "exclude"])
def test_free_riders_flagged_and_handled_by_policy(policy: str) -> None:
    gw = MemoryGateway()
    connect(gw, a="honest", b="honest", c="honest", lazy="copy")
    events: list[tuple[str, Mapping[str, Any]]] = []
    audit: list[tuple[str, list[str], Mapping[str, Any]]] = []
    spec = job(f"free_riders: {{policy: {policy}, downweight_factor: 0.5}}\n", rounds=1, nodes=4)
    ledger = run(gw, spec, events=events, audit=audit)
    report, _ = ledger.rounds[0]
    assert report.details is not None
    assert [(f.node_id, str(f.kind)) for f in report.details.free_riders] == [
        ("lazy", "copy_global")
    ]
    lazy = {w.node_id: w for w in report.details.weights}["lazy"]
    expected = {"flag": ("kept", 100.0), "downweight": ("downweighted", 50.0),
                "exclude": ("rejected", 0.0)}[policy]  # fmt: skip
    assert (str(lazy.action), lazy.weight) == pytest.approx(expected)
    in_aggregate = [p.node_id for p in report.participants]
    assert ("lazy" in in_aggregate) is (policy != "exclude")
    if policy == "exclude":
        assert [(r.node_id, r.reason) for r in report.rejected] == [("lazy", "free_rider")]
    flagged = [d for k, d in events if k == "free_rider"]
    assert [(d["node_id"], d["kind"], d["policy"]) for d in flagged] == [
        ("lazy", "copy_global", policy)
    ]
    assert audit[0][2]["free_riders"]["flags"][0]["department"] == "dept-lazy"


def test_replay_of_an_old_update_is_excluded_in_a_later_round() -> None:
    gw = MemoryGateway()
    connect(gw, a="honest", b="honest", c="honest", parrot="replay")
    ledger = run(gw, job("free_riders: exclude\n", rounds=2, nodes=4))
    first, second = (r.details for r, _ in ledger.rounds)
    assert first is not None and second is not None
    assert first.free_riders == ()
    assert [(f.node_id, str(f.kind)) for f in second.free_riders] == [("parrot", "replay")]
    assert "round 1" in second.free_riders[0].evidence


def test_pure_noise_is_flagged() -> None:
    gw = MemoryGateway()
    connect(gw, a="honest", b="honest", c="honest", d="honest", static="noise")
    ledger = run(gw, job("free_riders: flag\n", rounds=1, nodes=5))
    details = ledger.rounds[0][0].details
    assert details is not None
    assert [(f.node_id, str(f.kind)) for f in details.free_riders] == [("static", "noise")]


def test_contributions_loo_and_shapley_per_round_on_the_validators_holdout() -> None:
    gw = MemoryGateway()
    connect(gw, a="honest", b="honest", bad=behaviour("attack", seed=3))
    ledger = run(gw, job("contribution: {metric: accuracy}\n", rounds=2, nodes=3))
    for report, _ in ledger.rounds:
        assert report.details is not None
        c = report.details.contribution
        assert c is not None and c.method == "exact" and c.evaluations == 8
        # efficiency: the Shapley values add up to v(N) − v(∅)
        assert sum(c.shapley.values()) == pytest.approx(c.v_full - c.v_empty)
        assert c.shapley["bad"] < 0 < c.shapley["a"]
        assert c.loo["bad"] < 0
    assert report.details is not None
    assert report.details.contribution.v_empty == pytest.approx(  # type: ignore[union-attr]
        ledger.rounds[0][0].metrics["accuracy"], abs=1e-6
    )


def test_contribution_on_a_named_validator_node_and_history_feeds_weighting() -> None:
    gw = MemoryGateway()
    asked: list[str] = []

    def validator() -> Any:
        async def behave(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
            assert request.kind is TaskKind.EVALUATE and weights is not None
            asked.append(str(request.config["dataset"]))
            return TaskOutcome("v", 10, {"accuracy": accuracy(np.asarray(weights["w"]))}, None)

        return behave

    connect(gw, a="honest", b=behaviour("attack", seed=2))
    spec = job(
        "participants: [a, b]\nweighting: {samples: 1.0, quality: 0.0, contribution: 1.0, "
        "min_factor: 0.05}\ncontribution: {validators: [v], dataset: validation}\n",
        rounds=2,
        nodes=2,
    )
    gw.connect(NodeInfo("v", "审计部"), validator())
    ledger = run(gw, spec, facts={})
    assert set(asked) == {"validation"}
    second = ledger.rounds[1][0].details
    assert second is not None
    by_node = {w.node_id: w for w in second.weights}
    # the attacker's negative Shapley history shrinks its weight in round 2
    assert by_node["b"].parts is not None and by_node["b"].parts.contribution < 0
    assert by_node["b"].weight < by_node["a"].weight


def test_anomaly_names_the_deviating_department_and_what_was_done() -> None:
    gw = MemoryGateway()
    connect(gw, a="honest", b="honest", c="honest", rogue=behaviour("attack", attack_from=2))
    events: list[tuple[str, Mapping[str, Any]]] = []
    spec = job("anomaly: {metric: accuracy, threshold: 0.01}\n", rounds=2, nodes=4)
    ledger = run(gw, spec, events=events)
    first, second = (r.details for r, _ in ledger.rounds)
    assert first is not None and first.anomaly is not None and not first.anomaly.triggered
    assert second is not None and second.anomaly is not None and second.anomaly.triggered
    assert [d.node_id for d in second.anomaly.suspects] == ["rogue"]
    [payload] = [d for k, d in events if k == "anomaly"]
    assert payload["round"] == 2 and payload["metric"] == "accuracy"
    assert payload["current"] < payload["previous"] - 0.01
    [suspect] = payload["suspects"]
    assert suspect["department"] == "dept-rogue" and suspect["action"] == "kept"
    assert suspect["cosine"] < 0
    assert "dept-rogue" in payload["summary"]
    # the payload holds all the chat notice needs
    notice = RoundDeviations.from_event(payload)
    zh, en = render(notice, Lang.ZH), render(notice, Lang.EN, Fmt.MARKDOWN)
    assert "dept-rogue的更新偏离最大" in zh and "仅标记，仍计入聚合" in zh
    assert "job 'agg', round 2" in en and "action: only flagged" in en


def test_anomaly_reports_exclusion_when_policy_removed_the_update() -> None:
    gw = MemoryGateway()
    connect(gw, a="honest", b="honest", c="honest", lazy="copy", rogue=behaviour("attack"))
    spec = job("free_riders: exclude\nanomaly: {threshold: 0.0}\n", rounds=2, nodes=5)
    ledger = run(gw, spec)
    details = ledger.rounds[1][0].details
    assert details is not None and details.anomaly is not None
    actions = {d.node_id: str(d.action) for d in details.anomaly.deviations}
    assert actions["lazy"] == "rejected" and actions["a"] == "kept"


@pytest.mark.parametrize(
    ("codec", "max_ratio", "tolerance"),
    [("fp16", 0.51, 0.01), ("int8", 0.26, 0.02), ("{codec: topk, topk_ratio: 0.1}", 0.21, 0.4)],
)
def test_compressed_updates_are_decoded_and_bytes_recorded(
    codec: str, max_ratio: float, tolerance: float
) -> None:
    gw = MemoryGateway()
    connect(gw, a=behaviour(seed=1), b=behaviour(seed=2))
    plain = run(gw, job(rounds=2, nodes=2))
    gw = MemoryGateway()
    connect(gw, a=behaviour(seed=1), b=behaviour(seed=2))
    packed = run(gw, job(f"compression: {codec}\n", rounds=2, nodes=2))
    for (r0, _), (r1, _) in zip(plain.rounds, packed.rounds, strict=True):
        assert r0.bytes_up == 2 * D * 4
        assert 0 < r1.bytes_up <= max_ratio * r0.bytes_up
        assert r1.details is not None and r1.details.compression is not None
        z = r1.details.compression
        assert (z.bytes_wire, z.bytes_decoded) == (r1.bytes_up, 2 * D * 4)
    assert packed.rounds[-1][0].metrics["accuracy"] > 0.55
    assert accuracy(np.asarray(packed.rounds[-1][1]["w"])) == pytest.approx(
        accuracy(np.asarray(plain.rounds[-1][1]["w"])), abs=tolerance
    )


def test_a_node_sending_the_wrong_encoding_is_rejected() -> None:
    gw = MemoryGateway()
    connect(gw, a=behaviour(seed=1), b=behaviour(seed=2))

    async def raw(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
        del weights
        if request.kind is TaskKind.EVALUATE:
            return TaskOutcome("c", 5, {"accuracy": 0.1}, None)
        return TaskOutcome("c", 10, {}, Weights({"w": np.zeros(D, np.float32)}))

    gw.connect(NodeInfo("c", "dept-c"), raw)
    ledger = run(gw, job("compression: int8\n", rounds=1, nodes=2))
    report = ledger.rounds[0][0]
    assert [(r.node_id, r.reason) for r in report.rejected] == [("c", "unknown_tensor")]


def test_contribution_tasks_carry_the_pooled_standardizer_of_a_learning_job() -> None:
    spec = parse_job(
        "name: lr\nmodel: {name: logistic_regression}\ndataset: fraud\n"
        "data: {target: y, features: [a, b]}\nrounds: 1\nmin_nodes: 2\nround_deadline_s: 5\n"
        "max_retries: 0\ncontribution: {metric: accuracy}\n"
    )
    evaluations: list[Mapping[str, Any]] = []

    def learner(value: float) -> Any:
        async def behave(request: TaskRequest, weights: Weights | None) -> TaskOutcome:
            if request.kind is TaskKind.STATS:
                moments = {"count": np.array([10.0]), "sum": np.array([5.0, 20.0]),
                           "m2": np.array([9.0, 90.0])}  # fmt: skip
                return TaskOutcome("x", 0, {}, Weights(moments))
            if request.kind is TaskKind.INIT:
                return TaskOutcome("x", 0, {}, Weights({"w": np.zeros(3, np.float32)}))
            assert weights is not None
            if request.kind is TaskKind.EVALUATE:
                evaluations.append(request.config)
                return TaskOutcome("x", 5, {"accuracy": 0.5 + 0.01 * float(weights["w"][0])}, None)
            return TaskOutcome("x", 10, {}, Weights({"w": np.full(3, value, np.float32)}))

        return behave

    gw = MemoryGateway()
    connect(gw, a=learner(1.0), b=learner(2.0))
    ledger = run(gw, spec)
    details = ledger.rounds[0][0].details
    assert details is not None and details.contribution is not None
    assert len(evaluations) > 2  # the holdout evaluation plus the candidate models
    assert all("data.standardizer" in c and c["dataset"] == "fraud" for c in evaluations)
