"""Federated standardization equals numpy's statistics on the union of the nodes' rows."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawfed.core.errors import DataError
from clawfed.data import Moments, Standardizer, combine, local_moments


def _nodes(
    seed: int, sizes: list[int], width: int, loc: float, scale: float
) -> list[npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    return [rng.normal(loc, scale, (n, width)) * rng.uniform(0.5, 2.0, width) for n in sizes]


def test_combined_statistics_equal_numpy_on_the_union() -> None:
    parts = _nodes(0, [50, 1000, 17], width=6, loc=3.0, scale=2.0)
    union = np.vstack(parts)
    result = combine([local_moments(p) for p in parts])
    np.testing.assert_allclose(result.mean, union.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.std, union.std(axis=0), rtol=1e-12)


def test_large_offsets_keep_their_precision() -> None:
    parts = _nodes(1, [300, 400], width=3, loc=0.0, scale=1.0)
    shifted = [p + 1e7 for p in parts]
    union = np.vstack(shifted)
    result = combine([local_moments(p) for p in shifted])
    np.testing.assert_allclose(result.std, union.std(axis=0), rtol=1e-7)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(10, 80), min_size=1, max_size=6),
    loc=st.floats(-1e4, 1e4),
    scale=st.floats(1e-3, 1e3),
)
def test_any_partition_matches_the_pooled_rows(
    seed: int, sizes: list[int], loc: float, scale: float
) -> None:
    parts = _nodes(seed, sizes, width=4, loc=loc, scale=scale)
    union = np.vstack(parts)
    result = combine([local_moments(p) for p in parts])
    np.testing.assert_allclose(result.mean, union.mean(axis=0), rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(result.std, union.std(axis=0), rtol=1e-6)
    z = result.transform(union)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-6)


@pytest.mark.parametrize("value", [0.0, 1000.3, 0.1, -2.5e6])
def test_constant_features_get_std_one(value: float) -> None:
    rng = np.random.default_rng(2)
    parts = [np.column_stack([np.full(n, value), rng.normal(size=n)]) for n in (777, 1000, 33)]
    result = combine([local_moments(p) for p in parts])
    assert result.std[0] == 1.0
    assert result.mean[0] == pytest.approx(value)
    z = result.transform(np.vstack(parts))
    np.testing.assert_allclose(z[:, 0], 0.0, atol=1e-6)


def test_transform_keeps_float32_and_checks_width() -> None:
    x = np.random.default_rng(3).normal(5, 2, (100, 3)).astype(np.float32)
    scaler = combine([local_moments(x)])
    assert scaler.transform(x).dtype == np.float32
    assert scaler.transform(x.astype(np.float64)).dtype == np.float64
    with pytest.raises(DataError, match=r"expects \(rows, 3\) features, got shape \(100, 2\)"):
        scaler.transform(x[:, :2])


def test_moments_hold_no_rows_and_round_trip() -> None:
    x = np.random.default_rng(4).normal(size=(25, 3))
    moments = local_moments(x)
    record = json.loads(json.dumps(moments.to_dict()))
    assert set(record) == {"count", "sum", "m2"}
    assert record["count"] == 25 and len(record["sum"]) == len(record["m2"]) == 3
    again = Moments.from_dict(record)
    np.testing.assert_array_equal(again.sum, moments.sum)
    scaler = combine([moments])
    restored = Standardizer.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(restored.std, scaler.std)


def test_local_moments_refusals() -> None:
    with pytest.raises(DataError, match="needs at least 10 rows .* got 9"):
        local_moments(np.zeros((9, 2)))
    with pytest.raises(DataError, match="2-D"):
        local_moments(np.zeros(20))
    bad = np.zeros((20, 2))
    bad[3, 1] = np.nan
    bad[4, 0] = np.inf
    with pytest.raises(DataError, match=r"features hold 2 NaN or infinite value\(s\)"):
        local_moments(bad)
    assert local_moments(np.ones((2, 2)), min_rows=2).count == 2


def test_combine_refusals() -> None:
    with pytest.raises(DataError, match="at least one node, got none"):
        combine([])
    a = local_moments(np.ones((10, 2)))
    b = local_moments(np.ones((10, 3)))
    with pytest.raises(DataError, match=r"different feature counts \[2, 3\]"):
        combine([a, b])
    empty = Moments(count=0, sum=np.zeros(2), m2=np.zeros(2))
    with pytest.raises(DataError, match="cover 0 rows in total"):
        combine([empty])
    assert combine([empty, a]).mean.tolist() == [1.0, 1.0]


def test_moments_validation() -> None:
    with pytest.raises(DataError, match="m2 must be >= 0"):
        Moments(count=3, sum=[1.0], m2=[-1.0])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="count must be an integer >= 0, got True"):
        Moments(count=True, sum=[1.0], m2=[1.0])  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"sum has 2 feature\(s\) but m2 has 1"):
        Moments(count=3, sum=[1.0, 2.0], m2=[1.0])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="count is 0 but sum or m2 is not zero"):
        Moments(count=0, sum=[1.0], m2=[0.0])  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"sum holds 1 non-finite value\(s\)"):
        Moments(count=3, sum=[float("nan")], m2=[0.0])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="malformed record"):
        Moments.from_dict({"count": 3, "sum": [1.0]})
    with pytest.raises(DataError, match="every std must be > 0"):
        Standardizer(mean=np.zeros(1), std=np.zeros(1))
