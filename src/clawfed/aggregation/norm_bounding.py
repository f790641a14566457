"""Norm bounding: clip every delta to L2 norm C, then take the sample-weighted mean.

Sun et al., "Can You Really Backdoor Federated Learning?", 2019. Streaming: memory O(model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from clawfed.aggregation.base import FitInstruction, all_nodes
from clawfed.aggregation.delta import apply_delta, check_update
from clawfed.aggregation.errors import TooFewUpdates
from clawfed.aggregation.fedavg import axpy
from clawfed.aggregation.settings import StrategySettings
from clawfed.aggregation.state import require_empty_state
from clawfed.core import ConfigError, NodeInfo, Update, Weights


def clip_factor(norm: float, max_norm: float) -> float:
    """``min(1, max_norm / norm)``: the factor that brings a vector of ``norm`` within the bound."""
    if norm <= max_norm:
        return 1.0
    return max_norm / norm


class NormBoundingAggregator:
    """Streaming weighted mean of deltas each clipped to L2 norm ``max_norm``."""

    streaming = True

    def __init__(self, global_weights: Weights, max_norm: float) -> None:
        self._global = global_weights
        self._spec = global_weights.spec()
        self._max_norm = max_norm
        self._acc = {n: np.zeros(a.shape, dtype=np.float64) for n, a in global_weights.items()}
        self._total = 0.0
        self._count = 0
        self._clipped = 0

    def add(self, update: Update) -> None:
        check_update(update, self._spec)
        factor = clip_factor(update.delta.l2_norm(), self._max_norm)
        w = float(update.num_samples)
        for name, acc in self._acc.items():
            axpy(acc, update.delta[name], w * factor)
        self._total += w
        self._count += 1
        self._clipped += int(factor < 1.0)

    def count(self) -> int:
        return self._count

    def clipped_count(self) -> int:
        """How many of the added updates exceeded the bound and were scaled down."""
        return self._clipped

    def delta(self) -> Weights:
        if self._count == 0:
            raise TooFewUpdates("norm_bounding", 1, 0, "the round produced no update")
        return Weights((n, np.asarray(a / self._total)) for n, a in self._acc.items())

    def result(self) -> Weights:
        return apply_delta(self._global, self.delta())


class NormBounding:
    """Every node trains; deltas are clipped to ``max_norm`` and sample-weight averaged."""

    name = "norm_bounding"

    def __init__(self, max_norm: float) -> None:
        if not (math.isfinite(max_norm) and max_norm > 0.0):
            raise ConfigError(
                f"norm_bounding max_norm must be a finite number > 0, got {max_norm!r}"
            )
        self.max_norm = float(max_norm)

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        del round_no
        return all_nodes(nodes)

    def aggregator(self, global_weights: Weights, round_no: int) -> NormBoundingAggregator:
        del round_no
        return NormBoundingAggregator(global_weights, self.max_norm)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_empty_state(self.name, state)


class NormBoundingSettings(StrategySettings):
    """``max_norm`` C > 0: the L2 bound on every delta (no default: it depends on the model)."""

    max_norm: float = Field(gt=0.0)

    def build(self) -> NormBounding:
        return NormBounding(self.max_norm)
