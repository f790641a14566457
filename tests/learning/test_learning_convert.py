"""Tests of the conversion between torch state dicts and ``Weights``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clawfed.core import ConfigError, RejectReason, UpdateRejected, Weights
from clawfed.learning.convert import (
    load_weights,
    module_spec,
    weights_from_module,
    weights_from_state_dict,
    wire_dtype,
)

torch.set_num_threads(1)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))


def test_weights_keep_state_dict_order_dtypes_and_values() -> None:
    net = _net()
    w = weights_from_module(net)
    sd = net.state_dict()
    assert list(w) == list(sd)
    assert "1.num_batches_tracked" in w and w["1.num_batches_tracked"].dtype == np.int64
    for name, t in sd.items():
        arr = w[name]
        assert arr.flags.c_contiguous and arr.flags.owndata
        assert arr.dtype.name == wire_dtype(t.dtype)
        np.testing.assert_array_equal(arr, t.numpy())


def test_round_trip_restores_every_tensor_exactly() -> None:
    src, dst = _net(), _net()
    with torch.no_grad():
        for p in dst.parameters():
            p.add_(1.0)
    src.train()
    src(torch.randn(8, 3))  # moves batch-norm statistics and the batch counter
    w = weights_from_module(src)
    load_weights(dst, w)
    for (n1, t1), (n2, t2) in zip(src.state_dict().items(), dst.state_dict().items(), strict=True):
        assert n1 == n2
        assert torch.equal(t1, t2)
    assert int(dst.state_dict()["1.num_batches_tracked"]) == 1


def test_snapshot_is_independent_of_later_training() -> None:
    net = _net()
    w = weights_from_module(net)
    before = w["0.weight"].copy()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    np.testing.assert_array_equal(w["0.weight"], before)


def test_loaded_weights_are_not_shared_with_the_arrays() -> None:
    net = _net()
    w = weights_from_module(net)
    arr = w["0.bias"]
    arr.flags.writeable = False  # read-only arrays from the wire must load without a warning
    load_weights(net, w)
    lin = net[0]
    assert isinstance(lin, nn.Linear)
    with torch.no_grad():
        lin.bias.add_(5.0)
    assert not np.allclose(arr, lin.bias.detach().numpy())


def test_bfloat16_travels_as_float32_and_loads_back() -> None:
    lin = nn.Linear(2, 2).to(torch.bfloat16)
    w = weights_from_module(lin)
    assert w["weight"].dtype == np.float32
    assert [s.dtype for s in module_spec(lin)] == ["float32", "float32"]
    other = nn.Linear(2, 2).to(torch.bfloat16)
    load_weights(other, w)
    assert other.weight.dtype == torch.bfloat16
    assert torch.equal(other.weight, lin.weight)


def test_unsupported_dtype_is_refused() -> None:
    with pytest.raises(ConfigError, match="tensor dtype must be one of .* got torch.complex64"):
        weights_from_state_dict({"z": torch.zeros(2, dtype=torch.complex64)})


def test_load_lists_every_mismatch() -> None:
    net = nn.Linear(3, 1)
    bad = Weights(
        [
            ("weight", np.zeros((1, 4), np.float32)),
            ("extra", np.zeros(2, np.float32)),
        ]
    )
    with pytest.raises(ConfigError) as err:
        load_weights(net, bad)
    msg = str(err.value)
    assert "missing tensor(s) 'bias'" in msg
    assert "unexpected tensor(s) 'extra'" in msg
    assert "'weight' has shape (1, 4), the model needs (1, 3)" in msg


def test_load_refuses_wrong_dtype() -> None:
    net = nn.Linear(2, 1)
    w = weights_from_module(net).map(lambda a: a.astype(np.float64))
    with pytest.raises(ConfigError, match="'weight' has dtype float64, the model needs float32"):
        load_weights(net, w)


def test_load_refuses_non_finite_and_leaves_module_unchanged() -> None:
    net = nn.Linear(2, 1)
    before = weights_from_module(net)
    w = Weights([("weight", np.array([[np.nan, 1.0]], np.float32)), ("bias", before["bias"])])
    with pytest.raises(UpdateRejected) as err:
        load_weights(net, w)
    assert err.value.reason is RejectReason.NON_FINITE
    np.testing.assert_array_equal(weights_from_module(net)["weight"], before["weight"])
