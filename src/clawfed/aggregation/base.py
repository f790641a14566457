"""The ``Strategy`` and ``Aggregator`` protocols every aggregation method implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from clawfed.core import NodeInfo, Update, Weights

ConfigValue = str | int | float | bool


@dataclass(frozen=True)
class FitInstruction:
    """Tell ``node_id`` to train this round with ``config`` (merged over the job's settings)."""

    node_id: str
    config: Mapping[str, ConfigValue] = field(default_factory=lambda: MappingProxyType({}))


@runtime_checkable
class Aggregator(Protocol):
    """Combines the updates of one round into the next global weights.

    A streaming aggregator (``streaming = True``) folds each update in as it arrives and
    keeps memory O(model); a non-streaming one (robust statistics) keeps all updates.
    """

    @property
    def streaming(self) -> bool:
        """Whether memory stays O(model) however many updates are added."""
        ...

    def add(self, update: Update) -> None:
        """Fold in one validated update."""
        ...

    def count(self) -> int:
        """Number of updates added so far."""
        ...

    def result(self) -> Weights:
        """The new global weights; at least one update must have been added."""
        ...


@runtime_checkable
class Strategy(Protocol):
    """Decides which nodes train each round and how their updates are combined."""

    @property
    def name(self) -> str:
        """Short identifier used in job files and the registry (e.g. ``fedavg``)."""
        ...

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        """Choose the nodes that train in round ``round_no`` and their per-node settings."""
        ...

    def aggregator(self, global_weights: Weights, round_no: int) -> Aggregator:
        """A fresh aggregator for round ``round_no`` starting from ``global_weights``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """State carried across rounds (server optimizer moments…), JSON-serializable."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned (used when a coordinator restarts)."""
        ...


def all_nodes(nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
    """Every node trains, with no per-node settings."""
    return [FitInstruction(n.node_id) for n in nodes]
