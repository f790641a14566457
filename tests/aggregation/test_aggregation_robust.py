"""Robust rules: median, trimmed mean, Krum / Multi-Krum, norm bounding."""

from __future__ import annotations

import numpy as np
import pytest

from clawfed.aggregation import (
    CoordinateMedian,
    FedAvg,
    Krum,
    KrumSettings,
    MedianSettings,
    MultiKrumSettings,
    NormBounding,
    NormBoundingSettings,
    Strategy,
    TooFewUpdates,
    TrimmedMean,
    TrimmedMeanSettings,
    krum_select,
)
from clawfed.core import ConfigError, NodeInfo, RejectReason, Update, UpdateRejected, Weights


def _w(*v: float) -> Weights:
    return Weights({"w": np.asarray(v, dtype=np.float64)})


def _agg(
    s: Strategy, g: Weights, deltas: list[Weights], counts: list[int] | None = None
) -> Weights:
    agg = s.aggregator(g, 1)
    for i, d in enumerate(deltas):
        agg.add(Update(f"n{i}", 1 if counts is None else counts[i], d))
    return agg.result()


def test_median_hand_computed_odd_and_even() -> None:
    g = _w(1.0, 1.0)
    # per coordinate: median(1, 2, 100) = 2; median(10, -1, 0) = 0
    out = _agg(CoordinateMedian(), g, [_w(1, 10), _w(2, -1), _w(100, 0)])
    np.testing.assert_allclose(out["w"], [3.0, 1.0])
    # even n: mean of the middle two, median(1, 2, 4, 100) = 3
    out = _agg(CoordinateMedian(), g, [_w(1, 0), _w(2, 0), _w(4, 0), _w(100, 0)])
    np.testing.assert_allclose(out["w"], [4.0, 1.0])


def test_median_ignores_sample_counts() -> None:
    out = _agg(CoordinateMedian(), _w(0.0), [_w(1), _w(2), _w(3)], counts=[1000, 1, 1])
    np.testing.assert_allclose(out["w"], [2.0])


def test_trimmed_mean_hand_computed() -> None:
    # beta = 0.25, n = 4: drop 1 per end; coordinate 0: (2 + 3) / 2; coordinate 1: (0 + 1) / 2
    out = _agg(TrimmedMean(0.25), _w(0, 0), [_w(1, 0), _w(2, -50), _w(3, 1), _w(100, 9)])
    np.testing.assert_allclose(out["w"], [2.5, 0.5])


def test_trimmed_mean_needs_enough_updates() -> None:
    agg = TrimmedMean(0.1).aggregator(_w(0.0), 1)
    for i in range(5):
        agg.add(Update(f"n{i}", 1, _w(float(i))))
    with pytest.raises(TooFewUpdates, match=r"needs at least 10 update\(s\), got 5") as exc:
        agg.result()
    assert (exc.value.needed, exc.value.got) == (10, 5)
    assert TrimmedMean(0.1).min_updates == 10 and TrimmedMean(0.3).min_updates == 4
    agg = TrimmedMean(0.3).aggregator(_w(0.0), 1)
    for i in range(4):
        agg.add(Update(f"n{i}", 1, _w(float(i))))
    np.testing.assert_allclose(agg.result()["w"], [1.5])  # drops 0 and 3


# Honest a=(0,0) b=(1,0) c=(0,2) d=(1,1), Byzantine e=(10,10); f=1 so each score sums the
# n-f-2 = 2 nearest squared distances: a 1+2=3, b 1+1=2, c 2+4=6, d 1+2=3, e 162+181=343.
_KRUM_DELTAS = [_w(0, 0), _w(1, 0), _w(0, 2), _w(1, 1), _w(10, 10)]


def test_krum_picks_the_lowest_score() -> None:
    assert krum_select([Update(f"n{i}", 1, d) for i, d in enumerate(_KRUM_DELTAS)], 1) == [1]
    out = _agg(KrumSettings(f=1).build(), _w(5, 5), _KRUM_DELTAS)
    np.testing.assert_allclose(out["w"], [6.0, 5.0])


def test_multi_krum_averages_the_m_best() -> None:
    s = MultiKrumSettings(f=1, m=3).build()
    assert s.name == "multi_krum"
    # b (2), then a and d (3 each, a first); mean of (1,0), (0,0), (1,1) = (2/3, 1/3)
    out = _agg(s, _w(0, 0), _KRUM_DELTAS)
    np.testing.assert_allclose(out["w"], [2 / 3, 1 / 3])


def test_krum_picks_the_honest_cluster() -> None:
    rng = np.random.default_rng(7)
    honest = [rng.normal(1.0, 0.05, size=6) for _ in range(6)]
    byzantine = [rng.normal(-3.0, 0.05, size=6) for _ in range(2)]  # a colluding pair
    updates = [Update(f"h{i}", 1, Weights({"w": h})) for i, h in enumerate(honest)]
    updates += [Update(f"b{i}", 1, Weights({"w": b})) for i, b in enumerate(byzantine)]
    chosen = krum_select(updates, f=2, m=4)
    assert all(updates[i].node_id.startswith("h") for i in chosen)


def test_krum_validates_n_f_m() -> None:
    assert Krum(f=1).min_updates == 5 and Krum(f=1, m=6).min_updates == 7
    agg = Krum(f=1).aggregator(_w(0.0), 1)
    for i in range(4):
        agg.add(Update(f"n{i}", 1, _w(float(i))))
    with pytest.raises(TooFewUpdates, match=r"needs at least 5 update\(s\), got 4.*n >= 2f \+ 3"):
        agg.result()
    agg = Krum(f=1, m=5).aggregator(_w(0.0), 1)
    for i in range(5):
        agg.add(Update(f"n{i}", 1, _w(float(i))))
    with pytest.raises(TooFewUpdates, match=r"m <= n - f"):
        agg.result()
    with pytest.raises(ConfigError, match="f .* must be an int >= 0, got -1"):
        Krum(f=-1)
    with pytest.raises(ConfigError, match="m .* must be an int >= 1, got 0"):
        Krum(f=1, m=0)


def test_norm_bounding_hand_computed() -> None:
    # [3, 4] has norm 5 > C = 1 -> [0.6, 0.8]; [0.3, 0] is within; sample-weighted 1:3
    s = NormBoundingSettings(max_norm=1.0).build()
    agg = s.aggregator(_w(0, 0), 1)
    assert agg.streaming is True
    agg.add(Update("n1", 1, _w(3, 4)))
    agg.add(Update("n2", 3, _w(0.3, 0)))
    np.testing.assert_allclose(agg.result()["w"], [(0.6 + 0.9) / 4, 0.8 / 4])
    assert agg.clipped_count() == 1
    with pytest.raises(ConfigError, match="max_norm must be a finite number > 0, got 0"):
        NormBounding(0.0)


@pytest.mark.parametrize(
    "strategy",
    [
        MedianSettings().build(),
        TrimmedMeanSettings(beta=0.2).build(),
        KrumSettings(f=1).build(),
        MultiKrumSettings(f=1, m=3).build(),
        NormBoundingSettings(max_norm=2.0).build(),
    ],
    ids=lambda s: s.name,
)
def test_robust_rules_resist_one_wildly_scaled_update(strategy: Strategy) -> None:
    rng = np.random.default_rng(3)
    g = Weights({"w": np.zeros(8), "b": np.zeros(())})
    honest = [
        Weights({"w": rng.normal(0.5, 0.1, 8), "b": np.asarray(rng.normal(0.5, 0.1))})
        for _ in range(4)
    ]
    attack = Weights({"w": -1e6 * honest[0]["w"], "b": np.asarray(1e6)})
    deltas = [*honest, attack]
    robust = _agg(strategy, g, deltas)
    naive = _agg(FedAvg(), g, deltas)
    assert float(np.max(np.abs(naive["w"]))) > 1e4
    assert float(np.max(np.abs(robust["w"] - 0.5))) < 0.5
    assert abs(float(robust["b"]) - 0.5) < 0.5 and robust["b"].shape == ()
    assert strategy.aggregator(g, 1).streaming is (strategy.name == "norm_bounding")


@pytest.mark.parametrize(
    "strategy",
    [CoordinateMedian(), TrimmedMean(0.3), Krum(0), NormBounding(1.0)],
    ids=lambda s: s.name,
)
def test_robust_rules_validate_updates_and_state(strategy: Strategy) -> None:
    agg = strategy.aggregator(_w(0, 0), 1)
    with pytest.raises(TooFewUpdates, match="no update"):
        agg.result()
    with pytest.raises(UpdateRejected) as exc:
        agg.add(Update("n1", 1, _w(1, 2, 3)))
    assert exc.value.reason is RejectReason.SHAPE_MISMATCH
    with pytest.raises(UpdateRejected) as exc:
        agg.add(Update("n1", 1, _w(np.inf, 2)))
    assert exc.value.reason is RejectReason.NON_FINITE
    with pytest.raises(UpdateRejected) as exc:
        agg.add(Update("n1", 1, Weights({"v": np.zeros(2)})))
    assert exc.value.reason is RejectReason.UNKNOWN_TENSOR
    assert agg.count() == 0
    assert strategy.state_dict() == {}
    with pytest.raises(ConfigError, match="keeps no state"):
        strategy.load_state_dict({"strategy": "fedadam"})
    nodes = [NodeInfo("a", "credit"), NodeInfo("b", "audit")]
    assert [i.node_id for i in strategy.configure(1, nodes)] == ["a", "b"]


def test_robust_rules_keep_integer_and_scalar_tensors() -> None:
    g = Weights({"w": np.zeros(2, dtype=np.float32), "steps": np.array(10, dtype=np.int64)})
    deltas = [
        Weights({"w": np.array([1, 2], dtype=np.float32), "steps": np.array(5, dtype=np.int64)})
        for _ in range(3)
    ]
    for s in (CoordinateMedian(), TrimmedMean(0.34), Krum(0), NormBounding(100.0)):
        out = _agg(s, g, deltas)
        assert out.spec() == g.spec(), s.name
        assert int(out["steps"]) == 15
        np.testing.assert_allclose(out["w"], [1, 2])
