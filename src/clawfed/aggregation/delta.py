"""Aggregators that expose the combined delta, and helpers shared by every rule.

A ``DeltaAggregator`` is an ``Aggregator`` that can also hand out the aggregated
delta itself (float64), before it is added to the global weights. Server optimizers
(``fedopt``) consume that delta as their pseudo-gradient, so any rule — the weighted
mean, the median, Krum — can be composed with any server optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from clawfed.aggregation.base import Aggregator
from clawfed.aggregation.errors import TooFewUpdates
from clawfed.aggregation.fedavg import WeightedMeanAggregator
from clawfed.core import TensorSpec, Update, Weights


@runtime_checkable
class DeltaAggregator(Aggregator, Protocol):
    """An ``Aggregator`` whose combined delta can be read before it is applied."""

    def delta(self) -> Weights:
        """The aggregated delta as float64 arrays; at least one update must have been added."""
        ...


#: Makes a fresh ``DeltaAggregator`` for one round from the global weights.
DeltaRule = Callable[[Weights], DeltaAggregator]


def check_update(update: Update, spec: Sequence[TensorSpec]) -> None:
    """Raise ``UpdateRejected`` unless ``update.delta`` matches ``spec`` and is finite."""
    update.delta.check_conforms(spec)
    update.delta.check_finite()


def apply_delta(global_weights: Weights, delta: Weights) -> Weights:
    """``global + delta`` computed in float64 and cast back to each tensor's dtype."""
    return Weights(
        (name, np.asarray(np.add(g, delta[name], dtype=np.float64)).astype(g.dtype))
        for name, g in global_weights.items()
    )


def stack(updates: Sequence[Update], name: str) -> np.ndarray:
    """The deltas of tensor ``name`` stacked along a new first axis, as float64."""
    return np.stack([np.asarray(u.delta[name], dtype=np.float64) for u in updates])


class WeightedMeanDelta:
    """Sample-weighted mean of deltas (FedAvg's rule), streaming, with ``delta()`` exposed.

    It composes ``fedavg.WeightedMeanAggregator`` and adds validation of every update
    against the global model's spec.
    """

    streaming = True

    def __init__(self, global_weights: Weights) -> None:
        self._spec = global_weights.spec()
        self._inner = WeightedMeanAggregator(global_weights)

    def add(self, update: Update) -> None:
        check_update(update, self._spec)
        self._inner.add(update)

    def count(self) -> int:
        return self._inner.count()

    def delta(self) -> Weights:
        if self._inner.count() == 0:
            raise TooFewUpdates("weighted mean", 1, 0, "the round produced no update")
        return self._inner.mean_delta()

    def result(self) -> Weights:
        if self._inner.count() == 0:
            raise TooFewUpdates("weighted mean", 1, 0, "the round produced no update")
        return self._inner.result()


#: Combines all the updates of a round into one float64 delta (a pure function).
Combine = Callable[[Sequence[Update]], Weights]


class BufferedAggregator:
    """Keeps every update of the round, then combines them with a pure ``combine`` function.

    Used by robust rules (median, trimmed mean, Krum) that need all updates at once, so
    memory is O(nodes × model). The combined delta is computed once and cached.
    """

    streaming = False

    def __init__(self, global_weights: Weights, combine: Combine) -> None:
        self._global = global_weights
        self._spec = global_weights.spec()
        self._combine = combine
        self._updates: list[Update] = []
        self._delta: Weights | None = None

    def add(self, update: Update) -> None:
        check_update(update, self._spec)
        self._updates.append(update)
        self._delta = None

    def count(self) -> int:
        return len(self._updates)

    def delta(self) -> Weights:
        if self._delta is None:
            if not self._updates:
                raise TooFewUpdates("aggregation", 1, 0, "the round produced no update")
            self._delta = self._combine(tuple(self._updates))
        return self._delta

    def result(self) -> Weights:
        return apply_delta(self._global, self.delta())
