"""Conversion between a torch module's ``state_dict`` and clawfed ``Weights``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from clawfed.core import ConfigError, TensorSpec, Weights

#: torch dtype -> numpy dtype name used on the wire. bfloat16 widens losslessly to float32.
_WIRE_DTYPE: dict[torch.dtype, str] = {
    torch.float16: "float16",
    torch.bfloat16: "float32",
    torch.float32: "float32",
    torch.float64: "float64",
    torch.int8: "int8",
    torch.int16: "int16",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


def wire_dtype(dtype: torch.dtype) -> str:
    """The numpy dtype name a tensor of ``dtype`` travels as.

    Raises
    ------
    ConfigError
        For dtypes that cannot travel (complex, quantized, float8 …).
    """
    name = _WIRE_DTYPE.get(dtype)
    if name is None:
        known = ", ".join(sorted(str(d).removeprefix("torch.") for d in _WIRE_DTYPE))
        raise ConfigError(f"tensor dtype must be one of {known}, got {dtype}")
    return name


def weights_from_state_dict(state: Mapping[str, torch.Tensor]) -> Weights:
    """Copy every tensor of ``state`` to a contiguous CPU numpy array, keeping the order.

    The arrays own their memory, so training the module afterwards does not change them.
    """
    out: list[tuple[str, np.ndarray]] = []
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            raise ConfigError(f"state entry {name!r} must be a tensor, got {type(tensor).__name__}")
        target = wire_dtype(tensor.dtype)
        t = tensor.detach().to(device="cpu")
        if t.dtype == torch.bfloat16:
            t = t.to(torch.float32)
        arr = np.array(t.numpy(), dtype=target, copy=True, order="C")
        out.append((name, arr))
    return Weights(out)


def weights_from_module(module: nn.Module) -> Weights:
    """A snapshot of ``module.state_dict()`` (parameters and buffers) as ``Weights``."""
    return weights_from_state_dict(module.state_dict())


def module_spec(module: nn.Module) -> tuple[TensorSpec, ...]:
    """Name, wire dtype and shape of every entry of ``module.state_dict()``, in order."""
    return tuple(
        TensorSpec(name, wire_dtype(t.dtype), tuple(t.shape))
        for name, t in module.state_dict().items()
    )


def check_weights_fit(module: nn.Module, weights: Weights) -> None:
    """Raise ``ConfigError`` listing every name, shape or dtype where ``weights`` differ.

    Raises
    ------
    ConfigError
        When a tensor is missing, unexpected, or has another shape or dtype.
    """
    want = {s.name: s for s in module_spec(module)}
    missing = [n for n in want if n not in weights]
    unexpected = [n for n in weights if n not in want]
    problems: list[str] = []
    if missing:
        problems.append(f"missing tensor(s) {', '.join(map(repr, missing))}")
    if unexpected:
        problems.append(f"unexpected tensor(s) {', '.join(map(repr, unexpected))}")
    for name, arr in weights.items():
        spec = want.get(name)
        if spec is None:
            continue
        if tuple(arr.shape) != spec.shape:
            problems.append(f"{name!r} has shape {tuple(arr.shape)}, the model needs {spec.shape}")
        elif arr.dtype.name != spec.dtype:
            problems.append(f"{name!r} has dtype {arr.dtype.name}, the model needs {spec.dtype}")
    if problems:
        raise ConfigError(
            f"weights do not fit the model {type(module).__name__}: " + "; ".join(problems)
        )


def load_weights(module: nn.Module, weights: Weights) -> None:
    """Copy ``weights`` into ``module`` in place, after checking names, shapes and dtypes.

    Raises
    ------
    ConfigError
        When the weights do not match the module's ``state_dict`` (all differences listed).
    UpdateRejected
        With reason ``non_finite`` when a tensor holds NaN or Inf.
    """
    check_weights_fit(module, weights)
    weights.check_finite()
    current = module.state_dict()
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, arr in weights.items():
        # torch.tensor copies, so read-only numpy arrays are fine and nothing is shared
        state[name] = torch.tensor(np.ascontiguousarray(arr), dtype=current[name].dtype)
    module.load_state_dict(state, strict=True)
