"""Free-rider detection: updates that copy the global model, add only noise, or replay old ones.

Works on ``UpdateSketch`` es (``anomaly.py``), so memory is O(nodes × sketch) per round
plus a bounded history of fingerprints. Three kinds are flagged, at most one per update,
checked in this order:

- ``copy_global``: ``‖Δ‖ ≤ copy_ratio · median‖Δ‖`` of the round (or ``≤ copy_abs``): the
  node sent the global model back, claiming samples it did not train on.
- ``replay``: byte-identical to (same SHA-256), or within relative distance ``replay_tol``
  of, an update fingerprinted in one of the last ``history_rounds`` rounds from any node,
  or of an update another node sent earlier in this round.
- ``noise``: the cosine to the coordinate-wise median of the other updates, and to each
  other update, is within ``τ = max(noise_floor, noise_z / sqrt(d))`` of 0, where ``d`` is
  the sketch length: a random direction in ``d`` dimensions has cosine about
  ``N(0, 1/d)`` to any fixed vector, so the update is indistinguishable from noise. Only
  in rounds with a consensus: the median cosine of the other updates to the median of
  theirs must reach ``noise_consensus · τ``. Late in training honest updates are mostly
  SGD noise themselves, and then pure noise cannot be told apart: nothing is flagged.
  Needs at least 3 updates in the round.

Policy: ``flag`` keeps the update as it is; ``downweight`` multiplies its sample count by
``downweight_factor`` (rounded, at least 1), which lowers its weight by that factor in every
sample-weighted rule (FedAvg, FedProx, server optimizers, norm bounding, quality weighting)
and does nothing in rules that ignore sample counts (median, trimmed mean, Krum: use
``exclude`` with those); ``exclude`` leaves it out of the aggregate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar

import numpy as np
from pydantic import Field

from clawfed.aggregation.anomaly import UpdateSketch, UpdateSketcher, cosine, robust_reference
from clawfed.aggregation.base import Aggregator
from clawfed.aggregation.errors import TooFewUpdates
from clawfed.aggregation.settings import SectionSettings
from clawfed.core import JobError, Update, Weights


class FreeRiderKind(StrEnum):
    """How an update fails to carry the node's own training."""

    COPY_GLOBAL = "copy_global"
    NOISE = "noise"
    REPLAY = "replay"


class FreeRiderPolicy(StrEnum):
    """What happens to a flagged update."""

    FLAG = "flag"
    DOWNWEIGHT = "downweight"
    EXCLUDE = "exclude"


@dataclass(frozen=True)
class FreeRiderFlag:
    """A flagged update: the node, the kind, and the evidence in words for people and audit.

    ``statistic`` is the measured value and ``threshold`` the bound it broke (for
    ``copy_global`` the norm ratio, ``noise`` the largest |cosine|, ``replay`` the relative
    distance to the matched update).
    """

    node_id: str
    kind: FreeRiderKind
    evidence: str
    statistic: float
    threshold: float


class FreeRiderSettings(SectionSettings):
    """Thresholds, policy and memory bounds of free-rider detection (see the module doc)."""

    section: ClassVar[str] = "free_riders"

    policy: FreeRiderPolicy = Field(default=FreeRiderPolicy.FLAG, strict=False)
    downweight_factor: float = Field(default=0.1, gt=0.0, lt=1.0)
    copy_ratio: float = Field(default=0.01, ge=0.0, lt=1.0)
    copy_abs: float = Field(default=1e-12, ge=0.0)
    noise_z: float = Field(default=4.0, gt=0.0)
    noise_floor: float = Field(default=0.0, ge=0.0, lt=1.0)
    noise_consensus: float = Field(default=2.0, ge=1.0)
    replay_tol: float = Field(default=1e-3, ge=0.0, lt=1.0)
    history_rounds: int = Field(default=5, ge=1, le=1000)
    max_fingerprints: int = Field(default=512, ge=1, le=100_000)


@dataclass(frozen=True, eq=False)
class _Fingerprint:
    round_no: int
    node_id: str
    sketch: UpdateSketch


class FreeRiderDetector:
    """Flags free riders round by round, remembering a bounded history of fingerprints.

    Memory: at most ``max_fingerprints`` sketches from the last ``history_rounds`` rounds.
    """

    def __init__(self, settings: FreeRiderSettings | None = None) -> None:
        self.settings = settings or FreeRiderSettings()
        self._history: deque[_Fingerprint] = deque(maxlen=self.settings.max_fingerprints)
        self._last_round: int | None = None

    @property
    def fingerprints(self) -> int:
        """Number of past updates remembered."""
        return len(self._history)

    def inspect(
        self, round_no: int, sketches: Mapping[str, UpdateSketch]
    ) -> tuple[FreeRiderFlag, ...]:
        """Flags for the round's updates (node id → sketch, in arrival order); then remember them.

        Raises
        ------
        JobError
            If ``round_no`` is not after the last inspected round.
        """
        if self._last_round is not None and round_no <= self._last_round:
            raise JobError(
                f"free-rider detection must see rounds in order: round {round_no} after "
                f"round {self._last_round}"
            )
        self._last_round = round_no
        cfg = self.settings
        ids = list(sketches)
        norms = [sketches[i].norm for i in ids]
        median_norm = float(np.median(norms)) if norms else 0.0
        flags: dict[str, FreeRiderFlag] = {}
        for i in ids:
            flag = self._copy_flag(i, sketches[i], median_norm)
            if flag is None:
                flag = self._replay_flag(i, sketches[i], round_no, ids, sketches)
            if flag is not None:
                flags[i] = flag
        copies = {i for i, f in flags.items() if f.kind is FreeRiderKind.COPY_GLOBAL}
        directed = [i for i in ids if i not in copies]  # zero updates carry no direction
        if len(directed) >= 3:
            agreement = {i: self._agreement(i, directed, sketches) for i in directed}
            for i in directed:
                if i not in flags:
                    flag = self._noise_flag(i, directed, sketches, agreement)
                    if flag is not None:
                        flags[i] = flag
        oldest = round_no - cfg.history_rounds
        while self._history and self._history[0].round_no <= oldest:
            self._history.popleft()
        for i in ids:
            if sketches[i].norm > cfg.copy_abs:
                self._history.append(_Fingerprint(round_no, i, sketches[i]))
        return tuple(flags[i] for i in ids if i in flags)

    def _copy_flag(self, node: str, s: UpdateSketch, median_norm: float) -> FreeRiderFlag | None:
        cfg = self.settings
        if s.norm <= cfg.copy_abs:
            return FreeRiderFlag(
                node,
                FreeRiderKind.COPY_GLOBAL,
                f"update norm {s.norm:.3g} <= {cfg.copy_abs:g}: the global model was sent back",
                s.norm,
                cfg.copy_abs,
            )
        if median_norm > 0.0 and s.norm <= cfg.copy_ratio * median_norm:
            ratio = s.norm / median_norm
            return FreeRiderFlag(
                node,
                FreeRiderKind.COPY_GLOBAL,
                f"update norm is {ratio:.3g} of the round's median ({s.norm:.3g} vs "
                f"{median_norm:.3g}), below copy_ratio={cfg.copy_ratio:g}",
                ratio,
                cfg.copy_ratio,
            )
        return None

    def _replay_flag(
        self,
        node: str,
        s: UpdateSketch,
        round_no: int,
        ids: Sequence[str],
        sketches: Mapping[str, UpdateSketch],
    ) -> FreeRiderFlag | None:
        tol = self.settings.replay_tol
        earlier = [(round_no, j, sketches[j]) for j in ids[: ids.index(node)]]
        past = [(f.round_no, f.node_id, f.sketch) for f in self._history]
        for r, j, old in [*earlier, *past]:
            if old.sketcher_id != s.sketcher_id or old.norm <= self.settings.copy_abs:
                continue
            same = old.digest == s.digest
            rel = 0.0 if same else s.distance(old) / max(old.sketch_norm, 1e-300)
            if same or rel <= tol:
                where = "earlier in this round" if r == round_no else f"in round {r}"
                how = "byte-identical to" if same else f"within relative distance {rel:.2g} of"
                return FreeRiderFlag(
                    node,
                    FreeRiderKind.REPLAY,
                    f"update is {how} the update node {j} sent {where}",
                    rel,
                    tol,
                )
        return None

    @staticmethod
    def _agreement(node: str, ids: Sequence[str], sketches: Mapping[str, UpdateSketch]) -> float:
        """Cosine of ``node``'s update to the coordinate-wise median of the others'."""
        others = [sketches[j] for j in ids if j != node]
        return cosine(sketches[node].vector, robust_reference(others))

    def _noise_flag(
        self,
        node: str,
        ids: Sequence[str],
        sketches: Mapping[str, UpdateSketch],
        agreement: Mapping[str, float],
    ) -> FreeRiderFlag | None:
        cfg = self.settings
        s = sketches[node]
        tau = max(cfg.noise_floor, cfg.noise_z / math.sqrt(s.vector.size))
        consensus = float(np.median([agreement[j] for j in ids if j != node]))
        if consensus < cfg.noise_consensus * tau:
            return None  # no shared direction this round: noise cannot be told apart
        ref_cos = agreement[node]
        pair_cos = max(abs(s.cosine(sketches[j])) for j in ids if j != node)
        worst = max(abs(ref_cos), pair_cos)
        if worst > tau:
            return None
        return FreeRiderFlag(
            node,
            FreeRiderKind.NOISE,
            f"update is uncorrelated with the others: cosine {ref_cos:+.3f} to their median, "
            f"at most {pair_cos:.3f} to any, within the noise band ±{tau:.3f} while the "
            f"others agree at cosine {consensus:.2f}",
            worst,
            tau,
        )

    def factors(self, flags: Sequence[FreeRiderFlag]) -> dict[str, float]:
        """Node id → weight factor the policy gives each flagged node (1.0, the factor, 0.0)."""
        policy = self.settings.policy
        factor = {
            FreeRiderPolicy.FLAG: 1.0,
            FreeRiderPolicy.DOWNWEIGHT: self.settings.downweight_factor,
            FreeRiderPolicy.EXCLUDE: 0.0,
        }[policy]
        return {f.node_id: factor for f in flags}


def downweighted(update: Update, factor: float) -> Update:
    """``update`` with its sample count multiplied by ``factor`` (rounded, at least 1)."""
    n = max(1, round(update.num_samples * factor))
    return Update(update.node_id, n, update.delta, update.metrics)


class ScreenedAggregator:
    """Holds the round's updates, screens them for free riders, then aggregates by policy.

    ``inner`` makes the real aggregator (e.g. ``lambda w: strategy.aggregator(w, round_no)``)
    once the flags are known; memory is O(nodes × model) like any buffering rule. With
    policy ``flag`` prefer sketching in the engine and keeping the streaming aggregator.
    """

    streaming = False

    def __init__(
        self,
        global_weights: Weights,
        round_no: int,
        inner: Callable[[Weights], Aggregator],
        detector: FreeRiderDetector,
        sketcher: UpdateSketcher,
    ) -> None:
        self._global = global_weights
        self._round = round_no
        self._inner_factory = inner
        self._detector = detector
        self._sketcher = sketcher
        self._updates: list[Update] = []
        self._sketches: dict[str, UpdateSketch] = {}
        self._flags: tuple[FreeRiderFlag, ...] | None = None
        self._inner: Aggregator | None = None
        self._result: Weights | None = None

    def add(self, update: Update) -> None:
        if self._flags is not None:
            raise JobError("the round was already screened; no update can be added")
        if update.node_id in self._sketches:
            raise JobError(f"node {update.node_id} sent a second update in the same round")
        sketch = self._sketcher.sketch(update.delta)  # validates names, dtypes and shapes
        update.delta.check_finite()
        self._sketches[update.node_id] = sketch
        self._updates.append(update)

    def count(self) -> int:
        return len(self._updates)

    def screen(self) -> tuple[FreeRiderFlag, ...]:
        """Run detection once (later calls return the same flags) and fill the inner rule."""
        if self._flags is None:
            self._flags = self._detector.inspect(self._round, self._sketches)
            factors = self._detector.factors(self._flags)
            self._inner = self._inner_factory(self._global)
            for u in self._updates:
                f = factors.get(u.node_id, 1.0)
                if f > 0.0:
                    self._inner.add(u if f == 1.0 else downweighted(u, f))
        return self._flags

    def sketches(self) -> Mapping[str, UpdateSketch]:
        """Node id → sketch of every update added (for anomaly attribution)."""
        return MappingProxyType(dict(self._sketches))

    def factors(self) -> dict[str, float]:
        """Node id → factor applied, for flagged nodes."""
        return self._detector.factors(self.screen())

    def inner(self) -> Aggregator:
        """The aggregator that received the screened updates."""
        self.screen()
        assert self._inner is not None
        return self._inner

    def result(self) -> Weights:
        if self._result is None:
            inner = self.inner()
            if inner.count() == 0:
                raise TooFewUpdates(
                    "free-rider screening",
                    1,
                    0,
                    f"all {len(self._updates)} update(s) were excluded as free riders",
                )
            self._result = inner.result()
        return self._result
