"""Quality- and contribution-weighted averaging: FedAvg whose weights also reward good data.

Each update's weight is::

    weight = min(n, max_samples)^a · clip(q^b · (1 + c·h), min_factor, max_factor)

with ``n`` the update's sample count (capped by the node's registered dataset size when the
coordinator knows it, so a node cannot inflate its say by claiming more rows than it has),
``q`` ∈ [0, 1] the node's data-quality score (``clawfed.data.profile``), ``h`` its
contribution history (``ContributionLedger.history``: about 1 for an average contributor,
0 for none, negative for harm) and ``a``, ``b``, ``c`` and the bounds from the job file.
Only the multiplier of the sample term is clipped, so the bounds mean the same whatever the
dataset sizes: "quality and history may scale a department's say by at most ×max_factor".
The mean is streaming (memory O(model)); the weights of each round are published by
``last_weights()`` for the round report and the audit chain.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
from pydantic import Field, model_validator

from clawfed.aggregation.base import FitInstruction, all_nodes
from clawfed.aggregation.delta import apply_delta, check_update
from clawfed.aggregation.errors import TooFewUpdates
from clawfed.aggregation.fedavg import axpy
from clawfed.aggregation.settings import StrategySettings
from clawfed.aggregation.state import require_empty_state
from clawfed.core import ConfigError, JobError, NodeInfo, Update, Weights


@dataclass(frozen=True)
class NodeFact:
    """What the coordinator knows about one node when a round starts.

    ``num_samples`` rows in its registered dataset, ``quality`` its data-quality score in
    [0, 1], ``contribution`` its contribution history (any finite number).
    """

    num_samples: int
    quality: float
    contribution: float

    def __post_init__(self) -> None:
        n = self.num_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"NodeFact.num_samples must be an integer >= 1, got {n!r}")
        if not (math.isfinite(self.quality) and 0.0 <= self.quality <= 1.0):
            raise ConfigError(f"NodeFact.quality must be in [0, 1], got {self.quality!r}")
        if not math.isfinite(self.contribution):
            raise ConfigError(f"NodeFact.contribution must be finite, got {self.contribution!r}")


#: Node id → what the coordinator knows about it; passed to ``QualityWeighted.set_facts``.
NodeFacts = Mapping[str, NodeFact]


@dataclass(frozen=True)
class WeightParts:
    """How one update's weight was made (every term of the formula, for the audit chain)."""

    num_samples: int
    quality: float
    contribution: float
    sample_term: float
    quality_term: float
    contribution_term: float
    factor: float
    clipped: bool
    known: bool


class NodeWeight(NamedTuple):
    """An update's aggregation weight and the parts it was computed from."""

    weight: float
    parts: WeightParts


@dataclass(frozen=True)
class WeightFormula:
    """``min(n, max_samples)^a · clip(q^b · (1 + c·h), min_factor, max_factor)``.

    ``default_quality`` is used for a node the coordinator has no facts about (its
    contribution is then 0, so it gets ``default_quality^b``).
    """

    sample_exponent: float = 1.0
    quality_exponent: float = 1.0
    contribution_coef: float = 0.5
    min_factor: float = 0.1
    max_factor: float = 10.0
    max_samples: int | None = None
    default_quality: float = 1.0

    def __post_init__(self) -> None:
        for name in ("sample_exponent", "quality_exponent", "contribution_coef", "min_factor"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (math.isfinite(self.max_factor) and self.max_factor >= self.min_factor):
            raise ConfigError(
                f"max_factor must be a finite number >= min_factor={self.min_factor}, "
                f"got {self.max_factor!r}"
            )
        if not self.max_factor > 0.0:
            raise ConfigError(f"max_factor must be > 0, got {self.max_factor!r}")
        m = self.max_samples
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ConfigError(f"max_samples must be an integer >= 1 or None, got {m!r}")
        if not (math.isfinite(self.default_quality) and 0.0 <= self.default_quality <= 1.0):
            raise ConfigError(f"default_quality must be in [0, 1], got {self.default_quality!r}")

    def weigh(self, num_samples: int, fact: NodeFact | None) -> NodeWeight:
        """The weight of an update of ``num_samples`` from a node with ``fact`` (None: unknown)."""
        n = num_samples if fact is None else min(num_samples, fact.num_samples)
        if self.max_samples is not None:
            n = min(n, self.max_samples)
        q = self.default_quality if fact is None else fact.quality
        h = 0.0 if fact is None else fact.contribution
        sample_term = float(n) ** self.sample_exponent
        quality_term = q**self.quality_exponent
        contribution_term = 1.0 + self.contribution_coef * h
        raw = quality_term * contribution_term
        factor = min(max(raw, self.min_factor), self.max_factor)
        parts = WeightParts(
            n,
            q,
            h,
            sample_term,
            quality_term,
            contribution_term,
            factor,
            factor != raw,
            fact is not None,
        )
        return NodeWeight(sample_term * factor, parts)


class QualityWeightedAggregator:
    """Streaming weighted mean of deltas with ``WeightFormula`` weights (memory O(model)).

    An update whose weight is 0 (``min_factor = 0``) is validated and published with its
    weight but not folded in.
    """

    streaming = True

    def __init__(self, global_weights: Weights, formula: WeightFormula, facts: NodeFacts) -> None:
        self._global = global_weights
        self._spec = global_weights.spec()
        self._formula = formula
        self._facts = facts
        self._acc = {n: np.zeros(a.shape, dtype=np.float64) for n, a in global_weights.items()}
        self._total = 0.0
        self._weights: dict[str, NodeWeight] = {}

    def add(self, update: Update) -> None:
        check_update(update, self._spec)
        if update.node_id in self._weights:
            raise JobError(f"node {update.node_id} sent a second update in the same round")
        nw = self._formula.weigh(update.num_samples, self._facts.get(update.node_id))
        self._weights[update.node_id] = nw
        if nw.weight > 0.0:
            for name, acc in self._acc.items():
                axpy(acc, update.delta[name], nw.weight)
            self._total += nw.weight

    def count(self) -> int:
        return len(self._weights)

    def weights(self) -> Mapping[str, NodeWeight]:
        """Node id → (weight, parts) of every update added so far."""
        return MappingProxyType(dict(self._weights))

    def delta(self) -> Weights:
        """The weighted mean delta (float64)."""
        if self._total <= 0.0:
            raise TooFewUpdates(
                "quality_weighted", 1, 0, f"none of {len(self._weights)} update(s) has weight > 0"
            )
        return Weights((n, np.asarray(a / self._total)) for n, a in self._acc.items())

    def result(self) -> Weights:
        return apply_delta(self._global, self.delta())


class QualityWeighted:
    """Every node trains; deltas are averaged with quality- and contribution-aware weights.

    Call ``set_facts`` before a round with what the coordinator knows of each node; nodes
    missing from the facts are weighted with ``default_quality`` and no history.
    """

    name = "quality_weighted"

    def __init__(self, formula: WeightFormula | None = None) -> None:
        self.formula = formula or WeightFormula()
        self._facts: NodeFacts = MappingProxyType({})
        self._last: QualityWeightedAggregator | None = None

    def set_facts(self, facts: NodeFacts) -> None:
        """Use ``facts`` (copied) for the aggregators made from now on."""
        for node_id, fact in facts.items():
            if not isinstance(fact, NodeFact):
                raise ConfigError(
                    f"facts of node {node_id!r} must be a NodeFact, got {type(fact).__name__}"
                )
        self._facts = MappingProxyType(dict(facts))

    def configure(self, round_no: int, nodes: Sequence[NodeInfo]) -> list[FitInstruction]:
        del round_no
        return all_nodes(nodes)

    def aggregator(self, global_weights: Weights, round_no: int) -> QualityWeightedAggregator:
        del round_no
        self._last = QualityWeightedAggregator(global_weights, self.formula, self._facts)
        return self._last

    def last_weights(self) -> Mapping[str, NodeWeight]:
        """Node id → (weight, parts) of the most recent round (empty before the first)."""
        return MappingProxyType({}) if self._last is None else self._last.weights()

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_empty_state(self.name, state)


class QualityWeightedSettings(StrategySettings):
    """Exponents ``a`` (samples), ``b`` (quality), coefficient ``c`` (history) and bounds.

    ``weight = min(n, max_samples)^a · clip(q^b · (1 + c·h), min_factor, max_factor)``.
    """

    sample_exponent: float = Field(default=1.0, ge=0.0, le=4.0)
    quality_exponent: float = Field(default=1.0, ge=0.0, le=16.0)
    contribution_coef: float = Field(default=0.5, ge=0.0, le=100.0)
    min_factor: float = Field(default=0.1, ge=0.0)
    max_factor: float = Field(default=10.0, gt=0.0)
    max_samples: int | None = Field(default=None, ge=1)
    default_quality: float = Field(default=1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds(self) -> QualityWeightedSettings:
        if self.min_factor > self.max_factor:
            raise ValueError(
                f"min_factor ({self.min_factor}) must be <= max_factor ({self.max_factor})"
            )
        return self

    def build(self) -> QualityWeighted:
        return QualityWeighted(WeightFormula(**self.model_dump()))
