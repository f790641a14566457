"""``all_finite``: one summing pass decides, and an overflowing sum falls back to elements."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from clawfed.core import RejectReason, UpdateRejected, Weights
from clawfed.core.weights import all_finite


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        st.sampled_from([np.float16, np.float32, np.float64]),
        st.integers(0, 600),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=16),
    )
)
def test_agrees_with_isfinite(a: np.ndarray) -> None:
    assert all_finite(a) == bool(np.isfinite(a).all())


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_finite_values_whose_sum_overflows_are_still_finite(dtype: type) -> None:
    big = np.full(1000, np.finfo(dtype).max, dtype=dtype)
    assert all_finite(big)
    big[-1] = np.inf
    assert not all_finite(big)
    big[-1] = -np.finfo(dtype).max  # +max and -max: the sum can be NaN-free but overflow
    assert all_finite(big)


def test_check_finite_names_the_tensor_and_counts_bad_values() -> None:
    w = Weights({"ok": np.ones(5, np.float32), "bad": np.array([1.0, np.nan, -np.inf])})
    with pytest.raises(UpdateRejected) as exc:
        w.check_finite()
    assert exc.value.reason is RejectReason.NON_FINITE
    assert "'bad' holds 2 NaN or Inf" in exc.value.detail
