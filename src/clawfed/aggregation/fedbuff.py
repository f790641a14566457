"""FedBuff's server side (Nguyen et al., AISTATS 2022): settings, staleness weight, buffer.

An update computed on version ``τ`` that arrives when the model is at version ``t`` has
staleness ``t − τ`` and enters the buffer scaled by ``(1 + staleness)^(−staleness_exponent)``;
when the buffer holds ``buffer_size`` (K) updates the server steps
``x ← x + server_lr · Σ wᵢ·s(τᵢ)·Δᵢ / Σ wᵢ``. The engine that drives it over the gateway is
``clawfed.coordinator.async_engine``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import numpy as np
from pydantic import Field

from clawfed.aggregation.delta import apply_delta, check_update
from clawfed.aggregation.fedavg import axpy
from clawfed.aggregation.settings import SectionSettings
from clawfed.core import ConfigError, JobError, Update, Weights


class BufferWeighting(StrEnum):
    """How updates in the buffer are weighted besides staleness."""

    UNIFORM = "uniform"
    SAMPLES = "samples"


class FedBuffSettings(SectionSettings):
    """FedBuff's knobs as a job file states them.

    ``buffer_size`` K updates per aggregation; ``server_lr`` η; ``staleness_exponent`` a in
    ``(1 + s)^(−a)``; updates staler than ``max_staleness`` versions are dropped (None:
    none is); at most ``max_concurrency`` nodes train at once (None: every participant);
    a node whose task failed is asked again after ``retry_after_s``; the job fails when no
    update is accepted for ``stall_timeout_s`` (None: ``round_deadline_s × (max_retries+1)``).
    """

    section: ClassVar[str] = "fedbuff"

    buffer_size: int = Field(default=10, ge=1)
    server_lr: float = Field(default=1.0, gt=0.0)
    staleness_exponent: float = Field(default=0.5, ge=0.0)
    max_staleness: int | None = Field(default=None, ge=0)
    weighting: BufferWeighting = Field(default=BufferWeighting.UNIFORM, strict=False)
    max_concurrency: int | None = Field(default=None, ge=1)
    retry_after_s: float = Field(default=1.0, gt=0.0)
    stall_timeout_s: float | None = Field(default=None, gt=0.0)


def staleness_weight(staleness: int, exponent: float) -> float:
    """``(1 + staleness)^(−exponent)``; 1.0 for a fresh update."""
    if isinstance(staleness, bool) or staleness < 0:
        raise ConfigError(f"staleness must be an integer >= 0, got {staleness!r}")
    return float((1.0 + staleness) ** (-exponent))


@dataclass(frozen=True)
class BufferedUpdate:
    """One update in a FedBuff buffer: where it started and how much it counted."""

    node_id: str
    base_version: int
    staleness: int
    staleness_weight: float
    weight: float
    num_samples: int


class FedBuffBuffer:
    """Streaming staleness-weighted sum of deltas (memory O(model))."""

    def __init__(self, global_weights: Weights, settings: FedBuffSettings) -> None:
        self._global = global_weights
        self._spec = global_weights.spec()
        self._settings = settings
        self._acc = {n: np.zeros(a.shape, dtype=np.float64) for n, a in global_weights.items()}
        self._total = 0.0
        self._entries: list[BufferedUpdate] = []

    def add(self, update: Update, base_version: int, version: int) -> BufferedUpdate:
        """Fold in ``update`` computed on ``base_version`` while the model is at ``version``."""
        check_update(update, self._spec)
        staleness = version - base_version
        if staleness < 0:
            raise JobError(f"update of {update.node_id} claims future version {base_version}")
        s = staleness_weight(staleness, self._settings.staleness_exponent)
        w = 1.0 if self._settings.weighting is BufferWeighting.UNIFORM else update.num_samples
        for name, acc in self._acc.items():
            axpy(acc, update.delta[name], w * s)
        self._total += w
        entry = BufferedUpdate(update.node_id, base_version, staleness, s, w, update.num_samples)
        self._entries.append(entry)
        return entry

    def count(self) -> int:
        """Updates in the buffer."""
        return len(self._entries)

    def entries(self) -> tuple[BufferedUpdate, ...]:
        """What was added, in order."""
        return tuple(self._entries)

    def delta(self) -> Weights:
        """``Σ wᵢ sᵢ Δᵢ / Σ wᵢ`` (float64)."""
        if not self._entries:
            raise JobError("the FedBuff buffer is empty; nothing to aggregate")
        return Weights((n, np.asarray(a / self._total)) for n, a in self._acc.items())

    def result(self) -> Weights:
        """``global + server_lr · delta()`` in each tensor's dtype."""
        lr = self._settings.server_lr
        return apply_delta(
            self._global, self.delta().map(lambda a: np.multiply(a, lr, dtype=np.float64))
        )
