"""Coordinate-wise trimmed mean of the deltas (Yin et al., ICML 2018)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from pydantic import Field

from clawfed.aggregation.base import FitInstruction, all_nodes
from clawfed.aggregation.delta import BufferedAggregator, stack
from clawfed.aggregation.errors import TooFewUpdates
from clawfed.aggregation.settings import StrategySettings
from clawfed.aggregation.state import require_empty_state
from clawfed.core import ConfigError, NodeInfo, Update, Weights


def trim_count(n: int, beta: float) -> int:
    """Updates dropped at each end per coordinate: ``floor(beta·n)``, refused if it is 0.

    Raises
    ------
    ConfigError
        If ``beta`` is not in (0, 0.5).
    TooFewUpdates
        If ``beta·n < 1``, which would trim nothing and give the plain (non-robust) mean.
    """
    if not (0.0 < beta < 0.5):
        raise ConfigError(f"trimmed_mean beta must be in (0, 0.5), got {beta!r}")
    k = math.floor(beta * n + 1e-9)
    if k < 1:
        raise TooFewUpdates(
            f"trimmed_mean(beta={beta})",
            math.ceil(1.0 / beta - 1e-9),
            n,
            f"floor(beta*n) = floor({beta}*{n}) = 0 would trim no update; add nodes or raise beta",
        )
    return k


def trimmed_mean(updates: Sequence[Update], beta: float) -> Weights:
    """Per coordinate, drop the ``floor(beta·n)`` largest and smallest deltas, average the rest.

    Unweighted, as in Yin et al.; ``beta`` must be in (0, 0.5).
    """
    k = trim_count(len(updates), beta)
    out: list[tuple[str, np.ndarray]] = []
    for name in updates[0].delta:
        s = np.sort(stack(updates, name), axis=0)
        out.append((name, np.asarray(s[k : len(updates) - k].mean(axis=0))))
    return Weights(out)


class TrimmedMean:
    """Every node trains; the new model adds the coordinate-wise β-trimmed mean delta."""

    name = "trimmed_mean"

    def __init__(self, beta: float = 0.1) -> None:
        if not (0.0 < beta < 0.5):
            raise ConfigError(f"trimmed_mean beta must be in (0, 0.5), got {beta!r}")
        self.beta = float(beta)

    @property
    def min_updates(self) -> int:
        """Fewest updates a round needs so that at least one is trimmed per end."""
        return math.ceil(1.0 / self.beta - 1e-9)

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        del round_no
        return all_nodes(nodes)

    def aggregator(self, global_weights: Weights, round_no: int) -> BufferedAggregator:
        del round_no
        return BufferedAggregator(global_weights, partial(trimmed_mean, beta=self.beta))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_empty_state(self.name, state)


class TrimmedMeanSettings(StrategySettings):
    """``beta`` β in (0, 0.5): fraction trimmed at each end; needs ``n ≥ 1/β`` updates."""

    beta: float = Field(default=0.1, gt=0.0, lt=0.5)

    def build(self) -> TrimmedMean:
        return TrimmedMean(self.beta)
