"""Quality- and contribution-weighted averaging: the weight formula, the mean, published weights."""

from __future__ import annotations

import numpy as np
import pytest

from clawfed.aggregation import TooFewUpdates, build_strategy
from clawfed.aggregation.quality_weighted import (
    NodeFact,
    QualityWeighted,
    WeightFormula,
)
from clawfed.core import ConfigError, JobError, NodeInfo, Update, Weights


def _w(*v: float) -> Weights:
    return Weights({"w": np.asarray(v, dtype=np.float32)})


def test_formula_hand_computed() -> None:
    f = WeightFormula(sample_exponent=1.0, quality_exponent=2.0, contribution_coef=0.5)
    # 100^1 · 0.5^2 · (1 + 0.5·2) = 100 · 0.25 · 2 = 50
    nw = f.weigh(100, NodeFact(num_samples=500, quality=0.5, contribution=2.0))
    assert nw.weight == pytest.approx(50.0)
    p = nw.parts
    assert (p.num_samples, p.sample_term, p.quality_term, p.contribution_term) == (
        100,
        100.0,
        0.25,
        2.0,
    )
    assert p.factor == pytest.approx(0.5) and not p.clipped and p.known
    # sqrt(n): 64^0.5 · 1 · (1 + 0) = 8
    g = WeightFormula(sample_exponent=0.5, quality_exponent=1.0, contribution_coef=0.0)
    assert g.weigh(64, NodeFact(64, 1.0, 5.0)).weight == pytest.approx(8.0)


def test_factor_is_clipped_and_sample_counts_are_capped() -> None:
    f = WeightFormula(contribution_coef=1.0, min_factor=0.2, max_factor=3.0, max_samples=50)
    high = f.weigh(40, NodeFact(1000, 1.0, 9.0))  # factor 10 → 3
    assert high.weight == pytest.approx(40 * 3.0) and high.parts.clipped
    low = f.weigh(40, NodeFact(1000, 0.5, -3.0))  # 0.5·(1 − 3) = −1 → 0.2
    assert low.weight == pytest.approx(40 * 0.2) and low.parts.factor == 0.2
    # claims 900 samples, the registered dataset holds 30 → 30; max_samples caps at 50
    assert f.weigh(900, NodeFact(30, 1.0, 0.0)).parts.num_samples == 30
    assert f.weigh(900, None).parts.num_samples == 50


def test_unknown_node_gets_the_default_quality_and_no_history() -> None:
    f = WeightFormula(quality_exponent=1.0, default_quality=0.4)
    nw = f.weigh(10, None)
    assert nw.weight == pytest.approx(4.0)
    assert not nw.parts.known and nw.parts.contribution == 0.0


def test_aggregate_is_the_weighted_mean_and_weights_are_published() -> None:
    s = QualityWeighted(WeightFormula(contribution_coef=0.5))
    s.set_facts(
        {
            "a": NodeFact(100, 1.0, 0.0),  # 100 · 1 · 1 = 100
            "b": NodeFact(100, 0.5, 2.0),  # 100 · 0.5 · 2 = 100
            "c": NodeFact(50, 0.2, 0.0),  # 50 · 0.2 = 10
        }
    )
    g = _w(1.0, 1.0)
    agg = s.aggregator(g, 1)
    deltas = {"a": _w(1, 0), "b": _w(3, 0), "c": _w(0, 21)}
    for nid, d in deltas.items():
        agg.add(Update(nid, {"a": 100, "b": 100, "c": 50}[nid], d))
    expected = np.average([[1, 0], [3, 0], [0, 21]], axis=0, weights=[100, 100, 10])
    np.testing.assert_allclose(agg.result()["w"], 1.0 + expected, rtol=1e-6)
    published = s.last_weights()
    assert {k: v.weight for k, v in published.items()} == pytest.approx(
        {"a": 100.0, "b": 100.0, "c": 10.0}
    )
    weight, parts = published["b"]
    assert weight == pytest.approx(100.0) and parts.quality == 0.5


def test_zero_weight_updates_are_left_out_and_an_all_zero_round_fails() -> None:
    s = QualityWeighted(WeightFormula(min_factor=0.0))
    s.set_facts({"a": NodeFact(10, 1.0, 0.0), "z": NodeFact(10, 0.0, 0.0)})
    agg = s.aggregator(_w(0.0), 1)
    agg.add(Update("a", 10, _w(2.0)))
    agg.add(Update("z", 10, _w(1000.0)))
    np.testing.assert_allclose(agg.result()["w"], [2.0])
    assert s.last_weights()["z"].weight == 0.0 and agg.count() == 2
    only_zero = s.aggregator(_w(0.0), 2)
    only_zero.add(Update("z", 10, _w(1.0)))
    with pytest.raises(TooFewUpdates, match="weight > 0"):
        only_zero.result()
    with pytest.raises(JobError, match="second update"):
        only_zero.add(Update("z", 10, _w(1.0)))


def test_registry_builds_it_from_a_job_file_and_refuses_bad_settings() -> None:
    s = build_strategy(
        "quality_weighted",
        {"sample_exponent": 0.5, "quality_exponent": 2.0, "contribution_coef": 1.0},
    )
    assert isinstance(s, QualityWeighted) and s.name == "quality_weighted"
    assert (s.formula.sample_exponent, s.formula.quality_exponent) == (0.5, 2.0)
    assert [i.node_id for i in s.configure(1, [NodeInfo("n1", "d"), NodeInfo("n2", "d")])] == [
        "n1",
        "n2",
    ]
    with pytest.raises(ConfigError, match="min_factor"):
        build_strategy("quality_weighted", {"min_factor": 5.0, "max_factor": 2.0})
    with pytest.raises(ConfigError, match="quality_exponent"):
        build_strategy("quality_weighted", {"quality_exponent": -1.0})


def test_node_facts_are_validated() -> None:
    with pytest.raises(ConfigError, match="quality must be in"):
        NodeFact(10, 1.5, 0.0)
    with pytest.raises(ConfigError, match="num_samples"):
        NodeFact(0, 0.5, 0.0)
    with pytest.raises(ConfigError, match="contribution must be finite"):
        NodeFact(1, 0.5, float("nan"))
    with pytest.raises(ConfigError, match="must be a NodeFact"):
        QualityWeighted().set_facts({"a": (1, 0.5, 0.0)})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="max_factor"):
        WeightFormula(min_factor=2.0, max_factor=1.0)
