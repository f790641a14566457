"""Records that cross module boundaries: node descriptions, updates, metrics."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from clawfed.core.errors import RejectReason, UpdateRejected
from clawfed.core.weights import Weights

#: Metric name -> value, e.g. {"accuracy": 0.91, "loss": 0.23}.
Metrics = Mapping[str, float]


def validate_metrics(metrics: Mapping[str, float], *, where: str) -> Metrics:
    """Return a read-only copy of ``metrics`` after checking every value is a finite number."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"{where}: metric names must be non-empty strings, got {k!r}")
        fv = float(v)
        if not math.isfinite(fv):
            raise ValueError(f"{where}: metric {k!r} must be finite, got {v!r}")
        out[k] = fv
    return MappingProxyType(out)


@dataclass(frozen=True)
class NodeInfo:
    """A node as the coordinator knows it."""

    node_id: str
    department: str

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ValueError("node_id must not be empty")


@dataclass(frozen=True)
class Update:
    """One node's answer to a fit task.

    ``delta`` is the node's new local weights minus the global weights it started from,
    so that clipping, masking and compression all work on the same quantity.
    """

    node_id: str
    num_samples: int
    delta: Weights
    metrics: Metrics = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ValueError("Update.node_id must not be empty")
        if isinstance(self.num_samples, bool) or self.num_samples <= 0:
            raise UpdateRejected(
                RejectReason.BAD_SAMPLE_COUNT,
                f"node {self.node_id}: num_samples must be > 0, got {self.num_samples}",
            )
        object.__setattr__(
            self, "metrics", validate_metrics(self.metrics, where=f"update from {self.node_id}")
        )
