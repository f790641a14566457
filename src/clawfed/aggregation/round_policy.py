"""One round's aggregation around a strategy: weighting, free-rider screening, sketches.

``RoundPolicy`` lives as long as a job; ``RoundPolicy.collector`` makes the round's
``RoundCollector``, an ``Aggregator`` wrapping the strategy's own. It

- weighs each update with the job's ``WeightFormula`` (sample count, data quality,
  contribution history) when the job has a ``weighting`` section;
- sketches every update (``UpdateSketcher``) when free riders are screened or anomalies
  attributed, keeping memory O(nodes × sketch) while the strategy streams;
- with free-rider policy ``downweight`` or ``exclude``, holds the round's updates until all
  are in, screens them, and folds them into the strategy by policy (memory O(nodes × model));
  with ``flag`` (or no screening) updates stream straight through;
- keeps the folded updates when contributions are measured this round.

Non-unit weights reach a sample-weighted rule as sample counts: an update of weight ``w``
enters as ``max(1, round(w · RESOLUTION))`` samples, so relative weights are kept to
within ``0.5 / (w · RESOLUTION)`` (under 1e-5 for ``w ≥ 0.05``) whatever the rule.
``outcome()`` publishes each update's weight, its share, the terms it was made of, the
free-rider flags and what was done, for the round report and the audit chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from clawfed.aggregation.anomaly import UpdateAction, UpdateSketch, UpdateSketcher
from clawfed.aggregation.base import Aggregator
from clawfed.aggregation.errors import TooFewUpdates
from clawfed.aggregation.free_riders import (
    FreeRiderDetector,
    FreeRiderFlag,
    FreeRiderPolicy,
    FreeRiderSettings,
)
from clawfed.aggregation.quality_weighted import NodeFacts, WeightFormula, WeightParts
from clawfed.core import JobError, TensorSpec, Update, Weights

#: Samples per unit of weight when a weight other than the sample count is folded in.
RESOLUTION = 1 << 20
#: Sketch size for free-rider detection and anomaly attribution.
SKETCH_DIM = 4096


@dataclass(frozen=True)
class PublishedWeight:
    """How much one update counted this round, and why.

    ``weight`` is the formula's weight (the sample count without a ``weighting`` section)
    times the free-rider ``factor``; ``share`` its fraction of the round's total; ``parts``
    the formula's terms (None without a ``weighting`` section).
    """

    node_id: str
    num_samples: int
    weight: float
    share: float
    factor: float
    action: UpdateAction
    parts: WeightParts | None


@dataclass(frozen=True)
class RoundPolicyOutcome:
    """What the collector did with the round's updates."""

    weights: tuple[PublishedWeight, ...]
    flags: tuple[FreeRiderFlag, ...]
    sketches: Mapping[str, UpdateSketch]
    folded: tuple[Update, ...]

    def actions(self) -> dict[str, UpdateAction]:
        """Node id → what was done with its update."""
        return {w.node_id: w.action for w in self.weights}


class RoundPolicy:
    """The job-long state around the strategy: formula, free-rider memory, sketcher."""

    def __init__(
        self,
        *,
        formula: WeightFormula | None = None,
        free_riders: FreeRiderSettings | None = None,
        sketch: bool = False,
    ) -> None:
        self.formula = formula
        self.detector = None if free_riders is None else FreeRiderDetector(free_riders)
        self._sketch = sketch or free_riders is not None
        self._sketcher: UpdateSketcher | None = None
        self._sketched_spec: tuple[TensorSpec, ...] = ()

    @property
    def policy(self) -> FreeRiderPolicy | None:
        """The free-rider policy (None: no screening)."""
        return None if self.detector is None else self.detector.settings.policy

    def sketcher(self, global_weights: Weights) -> UpdateSketcher | None:
        """The job's sketcher (same hashes every round), or None when nothing needs sketches."""
        if not self._sketch:
            return None
        spec = global_weights.spec()
        if self._sketcher is None or self._sketched_spec != spec:
            self._sketcher = UpdateSketcher(spec, SKETCH_DIM, seed=0)
            self._sketched_spec = spec
        return self._sketcher

    def collector(
        self,
        round_no: int,
        global_weights: Weights,
        inner: Callable[[], Aggregator],
        *,
        facts: NodeFacts | None = None,
        keep_updates: bool = False,
    ) -> RoundCollector:
        """A collector for ``round_no`` folding into ``inner()`` (made once screening allows)."""
        return RoundCollector(self, round_no, global_weights, inner, facts or {}, keep_updates)


class RoundCollector:
    """An ``Aggregator`` that weighs, sketches and screens updates before the strategy sees them."""

    def __init__(
        self,
        policy: RoundPolicy,
        round_no: int,
        global_weights: Weights,
        inner: Callable[[], Aggregator],
        facts: NodeFacts,
        keep_updates: bool,
    ) -> None:
        self._p = policy
        self._round = round_no
        self._spec = global_weights.spec()
        self._facts = MappingProxyType(dict(facts))
        self._keep = keep_updates
        self._sketcher = policy.sketcher(global_weights)
        self._hold = policy.policy in (FreeRiderPolicy.DOWNWEIGHT, FreeRiderPolicy.EXCLUDE)
        self._scaled = policy.formula is not None or policy.policy is FreeRiderPolicy.DOWNWEIGHT
        self._inner = inner()
        self._held: list[Update] = []
        self._base: dict[str, tuple[float, WeightParts | None, int]] = {}
        self._sketches: dict[str, UpdateSketch] = {}
        self._folded: dict[str, tuple[float, float]] = {}  # node id -> weight, factor
        self._kept: list[Update] = []
        self._flags: tuple[FreeRiderFlag, ...] | None = None

    @property
    def streaming(self) -> bool:
        return not self._hold and not self._keep and self._inner.streaming

    def add(self, update: Update) -> None:
        if self._flags is not None:
            raise JobError(f"round {self._round} was already aggregated; no update can be added")
        if update.node_id in self._base:
            raise JobError(f"node {update.node_id} sent a second update in round {self._round}")
        update.delta.check_conforms(self._spec)
        update.delta.check_finite()
        formula = self._p.formula
        if formula is None:
            base: tuple[float, WeightParts | None, int] = (
                float(update.num_samples), None, update.num_samples
            )  # fmt: skip
        else:
            nw = formula.weigh(update.num_samples, self._facts.get(update.node_id))
            base = (nw.weight, nw.parts, update.num_samples)
        if self._sketcher is not None:
            self._sketches[update.node_id] = self._sketcher.sketch(update.delta)
        self._base[update.node_id] = base
        if self._hold:
            self._held.append(update)
        else:
            self._fold(update, 1.0)

    def _fold(self, update: Update, factor: float) -> None:
        weight = self._base[update.node_id][0] * factor
        if weight <= 0.0:
            return
        if self._scaled:
            n = max(1, round(weight * RESOLUTION))
            update = Update(update.node_id, n, update.delta, update.metrics)
        self._inner.add(update)
        self._folded[update.node_id] = (weight, factor)
        if self._keep:
            self._kept.append(update)

    def count(self) -> int:
        return len(self._base)

    def screen(self) -> tuple[FreeRiderFlag, ...]:
        """Detect free riders once (later calls return the same flags) and fold held updates."""
        if self._flags is not None:
            return self._flags
        detector = self._p.detector
        flags: tuple[FreeRiderFlag, ...] = ()
        if detector is not None and self._sketches:
            flags = detector.inspect(self._round, self._sketches)
        self._flags = flags
        factors = {} if detector is None else detector.factors(flags)
        for u in self._held:
            self._fold(u, factors.get(u.node_id, 1.0))
        self._held.clear()
        return flags

    def result(self) -> Weights:
        self.screen()
        if self._inner.count() == 0:
            raise TooFewUpdates(
                "free-rider screening",
                1,
                0,
                f"all {len(self._base)} update(s) of round {self._round} were excluded",
            )
        return self._inner.result()

    def outcome(self) -> RoundPolicyOutcome:
        """Published weights, flags, sketches and (when kept) the folded updates."""
        flags = self.screen()
        folded = self._folded
        total = sum(w for w, _ in folded.values())
        out: list[PublishedWeight] = []
        for node_id in sorted(self._base):
            _base, parts, n = self._base[node_id]
            weight, factor = folded.get(node_id, (0.0, 0.0))
            if node_id not in folded:
                action = UpdateAction.REJECTED
            elif factor < 1.0:
                action = UpdateAction.DOWNWEIGHTED
            else:
                action = UpdateAction.KEPT
            share = weight / total if total > 0 else 0.0
            out.append(PublishedWeight(node_id, n, weight, share, factor, action, parts))
        return RoundPolicyOutcome(
            tuple(out), flags, MappingProxyType(self._sketches), tuple(self._kept)
        )
