"""RoundCollector: weights reach any sample-weighted rule exactly, screening, published weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clawfed.aggregation import FedAvg, TooFewUpdates, build_strategy
from clawfed.aggregation.free_riders import FreeRiderPolicy, FreeRiderSettings
from clawfed.aggregation.quality_weighted import NodeFact, WeightFormula
from clawfed.aggregation.round_details import CompressionUse, RoundDetails
from clawfed.aggregation.round_policy import RESOLUTION, RoundPolicy
from clawfed.core import JobError, Update, UpdateRejected, Weights

G = Weights({"w": np.zeros(4, np.float32)})


def _u(node: str, value: float, n: int = 10) -> Update:
    return Update(node, n, Weights({"w": np.full(4, value, np.float32)}))


def test_formula_weights_reach_a_server_optimizer_rule_to_within_the_resolution() -> None:
    strategy = build_strategy("fedavgm", {"server_lr": 1.0, "momentum": 0.0})
    policy = RoundPolicy(formula=WeightFormula(sample_exponent=0.0, quality_exponent=1.0))
    facts = {"a": NodeFact(10, 0.3, 0.0), "b": NodeFact(10, 0.7, 0.0)}
    c = policy.collector(1, G, lambda: strategy.aggregator(G, 1), facts=facts)
    c.add(_u("a", 1.0))
    c.add(_u("b", 2.0))
    np.testing.assert_allclose(c.result()["w"], np.full(4, 0.3 * 1 + 0.7 * 2), rtol=1e-6)
    out = c.outcome().weights
    assert [w.weight for w in out] == pytest.approx([0.3, 0.7])
    assert [w.share for w in out] == pytest.approx([0.3, 0.7])
    assert c.streaming


def test_exclude_holds_updates_until_screened_and_all_excluded_is_too_few() -> None:
    policy = RoundPolicy(free_riders=FreeRiderSettings(policy=FreeRiderPolicy.EXCLUDE))
    c = policy.collector(1, G, lambda: FedAvg().aggregator(G, 1))
    assert not c.streaming
    c.add(_u("lazy", 0.0))
    with pytest.raises(TooFewUpdates, match="all 1 update"):
        c.result()
    assert [str(w.action) for w in c.outcome().weights] == ["rejected"]
    with pytest.raises(JobError, match="already aggregated"):
        c.add(_u("late", 1.0))


def test_duplicate_and_malformed_updates_are_refused() -> None:
    c = RoundPolicy().collector(1, G, lambda: FedAvg().aggregator(G, 1))
    c.add(_u("a", 1.0))
    with pytest.raises(JobError, match="node a sent a second update in round 1"):
        c.add(_u("a", 1.0))
    with pytest.raises(UpdateRejected, match="shape"):
        c.add(Update("b", 1, Weights({"w": np.zeros(5, np.float32)})))
    assert c.count() == 1


def test_downweight_scales_by_the_factor_through_sample_counts() -> None:
    settings = FreeRiderSettings(policy=FreeRiderPolicy.DOWNWEIGHT, downweight_factor=0.25)
    policy = RoundPolicy(free_riders=settings)
    ups = [_u("a", 1.0), _u("b", 1.1), _u("c", 0.9), _u("lazy", 0.0)]
    c = policy.collector(1, G, lambda: FedAvg().aggregator(G, 1), keep_updates=True)
    for u in ups:
        c.add(u)
    out = c.outcome()
    lazy = {w.node_id: w for w in out.weights}["lazy"]
    assert (str(lazy.action), lazy.weight, lazy.factor) == ("downweighted", 2.5, 0.25)
    assert {u.node_id: u.num_samples for u in out.folded}["lazy"] == round(2.5 * RESOLUTION)
    np.testing.assert_allclose(c.result()["w"], np.full(4, 30.0 / 32.5), rtol=1e-6)


def test_details_json_holds_statistics_only() -> None:
    c = RoundPolicy(formula=WeightFormula()).collector(1, G, lambda: FedAvg().aggregator(G, 1))
    c.add(_u("a", 1.0))
    d = RoundDetails(
        weights=c.outcome().weights,
        compression=CompressionUse("int8", 100, 400),
        departments={"a": "信贷部"},
    )
    body = d.to_json()
    assert json.loads(json.dumps(body)) == body
    assert body["weights"][0]["department"] == "信贷部"
    assert body["weights"][0]["parts"]["known"] is False
    assert body["compression"]["ratio"] == 4.0
