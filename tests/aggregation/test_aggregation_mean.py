"""FedAvg and the weighted-mean delta rule against ``np.average``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from clawfed.aggregation import FedAvg, TooFewUpdates, WeightedMeanDelta, apply_delta
from clawfed.core import NodeInfo, RejectReason, Update, UpdateRejected, Weights


def _w(**arrs: list[float]) -> Weights:
    return Weights((k, np.asarray(v, dtype=np.float32)) for k, v in arrs.items())


def test_fedavg_hand_computed_two_nodes() -> None:
    # mean delta = (1*[1, 0] + 3*[0, 3]) / 4 = [0.25, 2.25]
    g = _w(a=[1.0, 2.0])
    agg = FedAvg().aggregator(g, 1)
    agg.add(Update("n1", 1, _w(a=[1.0, 0.0])))
    agg.add(Update("n2", 3, _w(a=[0.0, 3.0])))
    np.testing.assert_allclose(agg.result()["a"], [1.25, 4.25])


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    data=st.data(),
)
def test_fedavg_and_weighted_mean_delta_match_np_average(n: int, data: st.DataObject) -> None:
    shape = data.draw(st.sampled_from([(3,), (2, 2), ()]))
    g = Weights({"w": data.draw(arrays(np.float64, shape, elements=finite))})
    deltas = [data.draw(arrays(np.float64, shape, elements=finite)) for _ in range(n)]
    counts = data.draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n))
    expected = g["w"] + np.average(np.stack(deltas), axis=0, weights=counts)

    fed = FedAvg().aggregator(g, 1)
    mean = WeightedMeanDelta(g)
    for i, (d, c) in enumerate(zip(deltas, counts, strict=True)):
        u = Update(f"n{i}", c, Weights({"w": d}))
        fed.add(u)
        mean.add(u)
    np.testing.assert_allclose(fed.result()["w"], expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mean.result()["w"], expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        mean.delta()["w"], np.average(np.stack(deltas), axis=0, weights=counts), atol=1e-9
    )
    assert mean.count() == n


def test_weighted_mean_delta_refuses_empty_round_and_bad_updates() -> None:
    g = _w(a=[0.0, 0.0])
    mean = WeightedMeanDelta(g)
    with pytest.raises(TooFewUpdates, match="needs at least 1 update"):
        mean.delta()
    with pytest.raises(UpdateRejected) as bad_shape:
        mean.add(Update("n1", 1, _w(a=[1.0, 2.0, 3.0])))
    assert bad_shape.value.reason is RejectReason.SHAPE_MISMATCH
    with pytest.raises(UpdateRejected) as nan:
        mean.add(Update("n1", 1, _w(a=[np.nan, 0.0])))
    assert nan.value.reason is RejectReason.NON_FINITE
    assert mean.count() == 0


def test_apply_delta_keeps_dtypes() -> None:
    g = Weights({"a": np.array([1, 2], dtype=np.int64), "b": np.array([0.5], dtype=np.float16)})
    d = Weights({"a": np.array([1.0, -1.0]), "b": np.array([0.25])})
    out = apply_delta(g, d)
    assert out["a"].dtype == np.int64 and out["b"].dtype == np.float16
    np.testing.assert_array_equal(out["a"], [2, 1])
    np.testing.assert_array_equal(out["b"], np.array([0.75], dtype=np.float16))


def test_fedavg_configure_every_node() -> None:
    nodes = [NodeInfo("n1", "credit"), NodeInfo("n2", "audit")]
    assert [i.node_id for i in FedAvg().configure(1, nodes)] == ["n1", "n2"]


def test_fedavg_accumulates_in_the_model_precision() -> None:
    # a float32 model: the mean of float32 updates accumulated in float32 stays within a
    # few float32 ulps of the float64 mean (half the memory of a float64 accumulator)
    rng = np.random.default_rng(7)
    g = Weights({"w": rng.standard_normal(50_000).astype(np.float32)})
    deltas = [rng.standard_normal(50_000).astype(np.float32) for _ in range(12)]
    counts = [int(c) for c in rng.integers(1, 100_000, size=12)]
    agg = FedAvg().aggregator(g, 1)
    for i, (d, c) in enumerate(zip(deltas, counts, strict=True)):
        agg.add(Update(f"n{i}", c, Weights({"w": d})))
    got = agg.result()["w"]
    exact = g["w"].astype(np.float64) + np.average(
        np.stack(deltas).astype(np.float64), axis=0, weights=counts
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, exact, rtol=0, atol=4 * np.finfo(np.float32).eps * 4)
    # the float64 rule used by the delta-based strategies keeps float64
    mean = WeightedMeanDelta(g)
    mean.add(Update("n0", 1, Weights({"w": deltas[0]})))
    assert mean.delta()["w"].dtype == np.float64
