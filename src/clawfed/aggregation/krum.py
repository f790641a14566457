"""Krum and Multi-Krum (Blanchard et al., "Machine Learning with Adversaries", NeurIPS 2017).

Each update is scored by the sum of squared distances to its ``n − f − 2`` nearest
neighbours; Krum keeps the lowest-scored update, Multi-Krum the ``m`` lowest and averages
them (unweighted, as in the paper). Tolerates ``f`` Byzantine updates when ``n ≥ 2f + 3``.
"""

from __future__ import annotations

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


def _check_fm(f: int, m: int) -> None:
    if isinstance(f, bool) or not isinstance(f, int) or f < 0:
        raise ConfigError(f"krum f (Byzantine updates tolerated) must be an int >= 0, got {f!r}")
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ConfigError(f"krum m (updates selected) must be an int >= 1, got {m!r}")


def pairwise_sq_distances(updates: Sequence[Update]) -> np.ndarray:
    """``D[i, j] = ‖Δᵢ − Δⱼ‖²`` over all tensors, as an ``n × n`` float64 matrix.

    Computed from Gram matrices tensor by tensor, so memory stays O(n × largest tensor).
    """
    n = len(updates)
    d = np.zeros((n, n), dtype=np.float64)
    for name in updates[0].delta:
        x = stack(updates, name).reshape(n, -1)
        g = x @ x.T
        sq = np.diag(g)
        d += sq[:, None] + sq[None, :] - 2.0 * g
    np.fill_diagonal(d, 0.0)
    return np.maximum(d, 0.0)


def krum_scores(sq_dist: np.ndarray, f: int) -> np.ndarray:
    """Score of each update: the sum of its ``n − f − 2`` smallest distances to the others."""
    n = sq_dist.shape[0]
    neighbours = n - f - 2
    others = np.sort(sq_dist + np.diag(np.full(n, np.inf)), axis=1)
    scores: np.ndarray = others[:, :neighbours].sum(axis=1)
    return scores


def krum_select(updates: Sequence[Update], f: int, m: int = 1) -> list[int]:
    """Indices of the ``m`` lowest-scored updates, best first (ties: lower index first).

    Raises
    ------
    TooFewUpdates
        If ``n < 2f + 3`` or ``m > n − f``.
    """
    _check_fm(f, m)
    n = len(updates)
    rule = f"krum(f={f}, m={m})"
    if n < 2 * f + 3:
        raise TooFewUpdates(rule, 2 * f + 3, n, f"Krum tolerates f={f} only when n >= 2f + 3")
    if m > n - f:
        raise TooFewUpdates(rule, m + f, n, f"selecting m={m} needs m <= n - f")
    scores = krum_scores(pairwise_sq_distances(updates), f)
    return [int(i) for i in np.argsort(scores, kind="stable")[:m]]


def multi_krum(updates: Sequence[Update], f: int, m: int) -> Weights:
    """The unweighted mean delta of the ``m`` updates chosen by ``krum_select``."""
    chosen = [updates[i] for i in krum_select(updates, f, m)]
    return Weights(
        (name, np.asarray(stack(chosen, name).mean(axis=0))) for name in updates[0].delta
    )


class Krum:
    """Every node trains; the new model adds the (Multi-)Krum-selected delta(s)."""

    def __init__(self, f: int = 1, m: int = 1) -> None:
        _check_fm(f, m)
        self.f = f
        self.m = m

    @property
    def name(self) -> str:
        return "krum" if self.m == 1 else "multi_krum"

    @property
    def min_updates(self) -> int:
        """Fewest updates a round needs: ``max(2f + 3, m + f)``."""
        return max(2 * self.f + 3, self.m + self.f)

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        del round_no
        return all_nodes(nodes)

    def aggregator(self, global_weights: Weights, round_no: int) -> BufferedAggregator:
        del round_no
        return BufferedAggregator(global_weights, partial(multi_krum, f=self.f, m=self.m))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_empty_state(self.name, state)


class KrumSettings(StrategySettings):
    """``f`` ≥ 0 Byzantine updates tolerated; one update is selected. Needs ``n ≥ 2f + 3``."""

    f: int = Field(default=1, ge=0)

    def build(self) -> Krum:
        return Krum(self.f, 1)


class MultiKrumSettings(StrategySettings):
    """``f`` ≥ 0 Byzantine updates tolerated, ``m`` ≥ 1 selected and averaged (m ≤ n − f)."""

    f: int = Field(default=1, ge=0)
    m: int = Field(default=2, ge=1)

    def build(self) -> Krum:
        return Krum(self.f, self.m)
