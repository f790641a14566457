"""Server optimizers: thin stateful objects around the pure rules of ``server_math``.

A server optimizer turns the round's pseudo-gradient (the aggregated delta) into the
next global weights and keeps its moments between rounds in float32 (see ``state``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np

from clawfed.aggregation import server_math
from clawfed.aggregation.state import MomentState
from clawfed.core import ConfigError, Weights


@runtime_checkable
class ServerOptimizer(Protocol):
    """Applies a pseudo-gradient to the global weights, keeping state across rounds."""

    @property
    def kind(self) -> str:
        """Short name of the update rule (``momentum``, ``adam``, ``yogi``, ``adagrad``)."""
        ...

    def step(self, weights: Weights, pseudo_grad: Weights) -> Weights:
        """The next global weights (dtypes of ``weights``); advances the state by one step."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-serializable scalars: kind, step count, digest of the moment arrays."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        ...

    def state_arrays(self) -> Weights:
        """Moment arrays (float32) named ``<slot>/<param>``; empty before the first step."""
        ...

    def load_state_arrays(self, arrays: Weights) -> None:
        """Restore what ``state_arrays`` returned."""
        ...


def _check_range(name: str, value: float, lo: float, hi: float, *, lo_open: bool) -> None:
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and value < hi
    if not ok:
        bound = f"{'(' if lo_open else '['}{lo}, {hi})"
        raise ConfigError(f"{name} must be in {bound}, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0.0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")


def _check_kind(owner: str, kind: str, state: Mapping[str, Any]) -> None:
    got = state.get("kind")
    if got != kind:
        raise ConfigError(f"{owner}: cannot load optimizer state of kind {got!r} into {kind!r}")


class MomentumOptimizer:
    """Server momentum (FedAvgM; Hsu et al., 2019): ``v ← μ·v + Δ``, ``x ← x + η·v``."""

    kind = "momentum"

    def __init__(self, lr: float = 0.1, momentum: float = 0.9) -> None:
        _check_positive("server_lr", lr)
        _check_range("momentum", momentum, 0.0, 1.0, lo_open=False)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self._state = MomentState("momentum optimizer", {"v": 0.0})

    def step(self, weights: Weights, pseudo_grad: Weights) -> Weights:
        vs = self._state.slot("v", weights.spec())
        out: list[tuple[str, np.ndarray]] = []
        new_v: dict[str, np.ndarray] = {}
        for name, x in weights.items():
            x_new, v_new = server_math.momentum_step(
                x.astype(np.float64),
                vs[name].astype(np.float64),
                np.asarray(pseudo_grad[name], dtype=np.float64),
                lr=self.lr,
                momentum=self.momentum,
            )
            new_v[name] = np.asarray(v_new, dtype=np.float32)
            out.append((name, np.asarray(x_new, dtype=x.dtype)))
        vs.update(new_v)  # commit only once every tensor succeeded
        self._state.step += 1
        return Weights(out)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._state.scalars()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _check_kind("momentum optimizer", self.kind, state)
        self._state.load_scalars(state)

    def state_arrays(self) -> Weights:
        return self._state.arrays()

    def load_state_arrays(self, arrays: Weights) -> None:
        self._state.load_arrays(arrays)


class AdaptiveKind(StrEnum):
    """Second-moment rule of an adaptive server optimizer (Reddi et al., 2021, Alg. 2)."""

    ADAGRAD = "adagrad"
    ADAM = "adam"
    YOGI = "yogi"


class AdaptiveOptimizer:
    """FedAdagrad / FedAdam / FedYogi: ``x ← x + η·m / (sqrt(v) + τ)``.

    ``m`` starts at 0 and ``v`` at ``τ²`` (Reddi et al. require ``v₋₁ ≥ τ²``).
    ``beta2`` is not used by ``ADAGRAD``.
    """

    def __init__(
        self,
        kind: AdaptiveKind,
        *,
        lr: float = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
    ) -> None:
        _check_positive("server_lr", lr)
        _check_range("beta1", beta1, 0.0, 1.0, lo_open=False)
        _check_range("beta2", beta2, 0.0, 1.0, lo_open=True)
        _check_positive("tau", tau)
        self._kind = AdaptiveKind(kind)
        self.lr = float(lr)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.tau = float(tau)
        self._state = MomentState(f"{self._kind} optimizer", {"m": 0.0, "v": self.tau * self.tau})

    @property
    def kind(self) -> str:
        return self._kind.value

    def _second_moment(self, v: np.ndarray, g: np.ndarray) -> np.ndarray:
        if self._kind is AdaptiveKind.ADAGRAD:
            return server_math.adagrad_second_moment(v, g)
        if self._kind is AdaptiveKind.ADAM:
            return server_math.adam_second_moment(v, g, beta2=self.beta2)
        return server_math.yogi_second_moment(v, g, beta2=self.beta2)

    def step(self, weights: Weights, pseudo_grad: Weights) -> Weights:
        spec = weights.spec()
        ms = self._state.slot("m", spec)
        vs = self._state.slot("v", spec)
        out: list[tuple[str, np.ndarray]] = []
        new_m: dict[str, np.ndarray] = {}
        new_v: dict[str, np.ndarray] = {}
        for name, x in weights.items():
            g = np.asarray(pseudo_grad[name], dtype=np.float64)
            m = server_math.first_moment(ms[name].astype(np.float64), g, beta1=self.beta1)
            v = self._second_moment(vs[name].astype(np.float64), g)
            x_new = server_math.adaptive_step(x.astype(np.float64), m, v, lr=self.lr, tau=self.tau)
            new_m[name] = np.asarray(m, dtype=np.float32)
            new_v[name] = np.asarray(v, dtype=np.float32)
            out.append((name, np.asarray(x_new, dtype=x.dtype)))
        ms.update(new_m)  # commit only once every tensor succeeded
        vs.update(new_v)
        self._state.step += 1
        return Weights(out)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._state.scalars()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _check_kind(f"{self.kind} optimizer", self.kind, state)
        self._state.load_scalars(state)

    def state_arrays(self) -> Weights:
        return self._state.arrays()

    def load_state_arrays(self, arrays: Weights) -> None:
        self._state.load_arrays(arrays)
