"""Coordinate-wise median of the deltas (Yin et al., "Byzantine-Robust Distributed Learning")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from clawfed.aggregation.base import FitInstruction, all_nodes
from clawfed.aggregation.delta import BufferedAggregator, stack
from clawfed.aggregation.settings import StrategySettings
from clawfed.aggregation.state import require_empty_state
from clawfed.core import NodeInfo, Update, Weights


def coordinate_median(updates: Sequence[Update]) -> Weights:
    """Per coordinate, the median of the deltas (unweighted; mean of the middle two if n is even).

    Robust while fewer than half the updates are Byzantine.
    """
    names = list(updates[0].delta)
    return Weights((n, np.asarray(np.median(stack(updates, n), axis=0))) for n in names)


def median_rule(global_weights: Weights) -> BufferedAggregator:
    """A fresh coordinate-wise-median aggregator (a ``DeltaRule``)."""
    return BufferedAggregator(global_weights, coordinate_median)


class CoordinateMedian:
    """Every node trains; the new model adds the coordinate-wise median delta."""

    name = "median"

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        del round_no
        return all_nodes(nodes)

    def aggregator(self, global_weights: Weights, round_no: int) -> BufferedAggregator:
        del round_no
        return median_rule(global_weights)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_empty_state(self.name, state)


class MedianSettings(StrategySettings):
    """The median has no settings."""

    def build(self) -> CoordinateMedian:
        return CoordinateMedian()
