"""Per-round contribution of each department: leave-one-out and (GTG-)Shapley values.

The value of a set ``S`` of the round's updates is ``v(S) = utility(aggregate(S))``, where
``aggregate(S)`` rebuilds the global model from those updates only (by default FedAvg:
the previous global weights plus the sample-weighted mean of their deltas; the empty set
gives the previous global model) and ``utility`` is a validation-set evaluation the job
names (higher is better, e.g. accuracy). Values are memoised, so each subset costs one
evaluation, and a budget bounds the number of evaluations.

- Leave-one-out: ``loo_i = v(N) − v(N \\ {i})``.
- Shapley: exact over all ``2^n`` subsets when that fits the budget, else GTG-Shapley
  (Liu et al., "GTG-Shapley: Efficient and Accurate Participant Contribution Evaluation in
  Federated Learning", ACM TIST 2022): Monte-Carlo permutations whose first player cycles
  through all participants (guided sampling), a between-round truncation (the whole round
  scores 0 when ``|v(N) − v(∅)| ≤ round_tolerance``), a within-permutation truncation (the
  remaining marginals are 0 once ``|v(N) − v(prefix)| ≤ within_tolerance``, as in truncated
  Monte-Carlo Shapley, Ghorbani and Zou, ICML 2019) and a convergence test (mean relative
  change of the estimates over the last ``window`` permutations below ``convergence_tol``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from clawfed.aggregation.delta import apply_delta
from clawfed.aggregation.fedavg import WeightedMeanAggregator
from clawfed.core import ConfigError, JobError, Update, Weights

#: A validation-set evaluation of a model's weights; higher is better.
Utility = Callable[[Weights], float]

#: Rebuilds the global model from a subset of the round's updates (empty: the old model).
SubsetAggregate = Callable[[Sequence[Update]], Weights]


def fedavg_subset(global_weights: Weights) -> SubsetAggregate:
    """FedAvg over a subset: ``global + Σ nᵢΔᵢ / Σ nᵢ`` (the empty set gives ``global``)."""

    def aggregate(updates: Sequence[Update]) -> Weights:
        if not updates:
            return global_weights
        agg = WeightedMeanAggregator(global_weights)
        for u in updates:
            agg.add(u)
        return apply_delta(global_weights, agg.mean_delta())

    return aggregate


class BudgetExhausted(JobError):
    """The evaluation budget of a contribution computation ran out."""


class SubsetValues:
    """Memoised ``v(S)`` over subsets of player indices, counting evaluations against a budget."""

    def __init__(self, n: int, value: Callable[[frozenset[int]], float], budget: int) -> None:
        self.n = n
        self._value = value
        self._budget = budget
        self._memo: dict[frozenset[int], float] = {}

    @property
    def evaluations(self) -> int:
        """Distinct subsets evaluated so far."""
        return len(self._memo)

    def known(self, subset: frozenset[int]) -> bool:
        """Whether ``v(subset)`` is already memoised."""
        return subset in self._memo

    def __call__(self, subset: frozenset[int]) -> float:
        hit = self._memo.get(subset)
        if hit is not None:
            return hit
        if len(self._memo) >= self._budget:
            raise BudgetExhausted(f"the budget of {self._budget} utility evaluation(s) is spent")
        v = float(self._value(subset))
        if not math.isfinite(v):
            raise JobError(f"utility returned {v} for a subset of {len(subset)} update(s)")
        self._memo[subset] = v
        return v


def leave_one_out(values: SubsetValues) -> list[float]:
    """``v(N) − v(N \\ {i})`` for every player (``n + 1`` evaluations)."""
    full = frozenset(range(values.n))
    v_full = values(full)
    return [v_full - values(full - {i}) for i in range(values.n)]


def exact_shapley(values: SubsetValues) -> list[float]:
    """Shapley values by enumerating all ``2^n`` subsets.

    ``φᵢ = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! · (v(S ∪ {i}) − v(S))``.
    """
    n = values.n
    phi = [0.0] * n
    coef = [math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)]
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for k in range(n):
            for s in itertools.combinations(others, k):
                subset = frozenset(s)
                phi[i] += coef[k] * (values(subset | {i}) - values(subset))
    return phi


@dataclass(frozen=True)
class ShapleySettings:
    """Budget, truncation and convergence of the Shapley estimate.

    ``max_evaluations`` bounds distinct utility evaluations per round (including ``v(∅)``,
    ``v(N)`` and leave-one-out); exact Shapley is used when ``2^n`` subsets fit in it.
    """

    max_evaluations: int = 256
    max_permutations: int = 500
    round_tolerance: float = 1e-4
    within_tolerance: float = 1e-3
    convergence_tol: float = 0.02
    window: int = 10
    seed: int = 0
    allow_exact: bool = True

    def __post_init__(self) -> None:
        for name, low in (("max_evaluations", 2), ("max_permutations", 1), ("window", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"shapley {name} must be an integer >= {low}, got {v!r}")
        for name in ("round_tolerance", "within_tolerance", "convergence_tol"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ConfigError(f"shapley {name} must be a finite number >= 0, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"shapley seed must be an integer >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class ShapleyEstimate:
    """Shapley values of players ``0..n−1`` and how they were obtained."""

    values: tuple[float, ...]
    method: str  # "exact", "gtg" or "truncated_round"
    permutations: int
    converged: bool


def gtg_shapley(values: SubsetValues, settings: ShapleySettings) -> ShapleyEstimate:
    """GTG-Shapley estimate (Liu et al., ACM TIST 2022, Alg. 1); stops early on a spent budget.

    A permutation cut short by the budget is discarded, so every estimate is an average of
    complete (possibly truncated) permutations.
    """
    n = values.n
    empty: frozenset[int] = frozenset()
    full = frozenset(range(n))
    v0, vn = values(empty), values(full)
    if abs(vn - v0) <= settings.round_tolerance:
        return ShapleyEstimate(tuple([0.0] * n), "truncated_round", 0, True)
    rng = np.random.default_rng(settings.seed)
    phi = np.zeros(n)
    snapshots: list[np.ndarray] = []
    k = 0
    converged = False
    while k < settings.max_permutations:
        first = k % n
        rest = [j for j in range(n) if j != first]
        order = [first] + [rest[j] for j in rng.permutation(len(rest))]
        marginal = np.zeros(n)
        prefix: frozenset[int] = empty
        v_prev = v0
        try:
            for j in order:
                prefix = prefix | {j}
                if abs(vn - v_prev) > settings.within_tolerance:
                    v_j = values(prefix)
                else:
                    v_j = v_prev  # truncated: the rest adds nothing measurable
                marginal[j] = v_j - v_prev
                v_prev = v_j
        except BudgetExhausted:
            break
        k += 1
        phi += (marginal - phi) / k
        snapshots.append(phi.copy())
        if k > settings.window and k >= n:
            old = snapshots[-1 - settings.window]
            scale = np.maximum(np.abs(phi), 1e-12)
            if float(np.mean(np.abs(phi - old) / scale)) < settings.convergence_tol:
                converged = True
                break
    return ShapleyEstimate(tuple(float(x) for x in phi), "gtg", k, converged)


@dataclass(frozen=True)
class RoundContribution:
    """Leave-one-out and Shapley values of each node in one round, and the cost to get them."""

    round_no: int
    v_empty: float
    v_full: float
    loo: Mapping[str, float]
    shapley: Mapping[str, float]
    method: str
    evaluations: int
    permutations: int
    converged: bool


def evaluate_round(
    round_no: int,
    updates: Sequence[Update],
    utility: Utility,
    *,
    aggregate: SubsetAggregate,
    settings: ShapleySettings | None = None,
) -> RoundContribution:
    """LOO and Shapley values of the round's ``updates`` under ``utility``.

    Parameters
    ----------
    round_no
        The round the updates belong to.
    updates
        The updates that entered the round (one per node).
    utility
        Validation evaluation of a model, higher is better.
    aggregate
        Rebuilds a model from a subset (e.g. ``fedavg_subset(global_weights)``).
    settings
        Budget, truncation and convergence; exact Shapley when ``2^n`` fits the budget.

    Raises
    ------
    JobError
        If there is no update, a node appears twice, the budget cannot cover leave-one-out
        (``n + 2`` evaluations) or the utility returns a non-finite value.
    """
    cfg = settings or ShapleySettings()
    if not updates:
        raise JobError(f"round {round_no}: contribution needs at least one update, got none")
    ids = [u.node_id for u in updates]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise JobError(f"round {round_no}: node(s) {dupes} appear more than once")
    n = len(updates)
    if cfg.max_evaluations < n + 2:
        raise JobError(
            f"round {round_no}: max_evaluations={cfg.max_evaluations} cannot cover leave-one-out "
            f"of {n} nodes (needs {n + 2})"
        )

    def value(subset: frozenset[int]) -> float:
        return utility(aggregate([updates[i] for i in sorted(subset)]))

    values = SubsetValues(n, value, cfg.max_evaluations)
    v_empty, v_full = values(frozenset()), values(frozenset(range(n)))
    loo = leave_one_out(values)
    if cfg.allow_exact and 2**n <= cfg.max_evaluations:
        est = ShapleyEstimate(tuple(exact_shapley(values)), "exact", 0, True)
    else:
        est = gtg_shapley(values, cfg)
    return RoundContribution(
        round_no,
        v_empty,
        v_full,
        MappingProxyType(dict(zip(ids, loo, strict=True))),
        MappingProxyType(dict(zip(ids, est.values, strict=True))),
        est.method,
        values.evaluations,
        est.permutations,
        est.converged,
    )


@dataclass(frozen=True)
class ContributionRecord:
    """One department's contribution in one round: what the lead stores per row."""

    round_no: int
    node_id: str
    department: str
    loo: float
    shapley: float


@dataclass
class ContributionLedger:
    """Contribution records of a job, round by round, and the history weighting uses."""

    records: list[ContributionRecord] = field(default_factory=list)

    def add_round(
        self, rc: RoundContribution, departments: Mapping[str, str] | None = None
    ) -> tuple[ContributionRecord, ...]:
        """Append one record per node of ``rc`` (refused if that round is already recorded)."""
        if any(r.round_no == rc.round_no for r in self.records):
            raise JobError(f"contributions of round {rc.round_no} are already recorded")
        depts = departments or {}
        new = tuple(
            ContributionRecord(rc.round_no, nid, depts.get(nid, ""), rc.loo[nid], rc.shapley[nid])
            for nid in sorted(rc.shapley)
        )
        self.records.extend(new)
        return new

    def totals(self) -> dict[str, tuple[float, float]]:
        """Node id → (sum of LOO, sum of Shapley) over all recorded rounds."""
        out: dict[str, tuple[float, float]] = {}
        for r in self.records:
            loo, sv = out.get(r.node_id, (0.0, 0.0))
            out[r.node_id] = (loo + r.loo, sv + r.shapley)
        return out

    def history(self, decay: float = 0.8) -> dict[str, float]:
        """Per node, its discounted Shapley sum divided by the mean absolute one over nodes.

        ``S_i = Σ_t decay^(T − t) · φ_i,t`` over the recorded rounds (T the latest), then
        ``h_i = S_i / mean_j |S_j|``: about 1 for an average contributor, 0 for none and
        negative for harm, whatever the utility's scale. Rounds with large utility changes
        weigh more than late rounds of small, noisy ones. ``decay`` ∈ (0, 1]; 1 sums all
        rounds alike. All zeros while nothing was recorded or every value is 0.
        """
        if not (math.isfinite(decay) and 0.0 < decay <= 1.0):
            raise ConfigError(f"history decay must be in (0, 1], got {decay!r}")
        if not self.records:
            return {}
        last = max(r.round_no for r in self.records)
        sums: dict[str, float] = {}
        for r in self.records:
            sums[r.node_id] = sums.get(r.node_id, 0.0) + decay ** (last - r.round_no) * r.shapley
        scale = float(np.mean([abs(v) for v in sums.values()]))
        if scale == 0.0:
            return dict.fromkeys(sums, 0.0)
        return {n: v / scale for n, v in sums.items()}

    @classmethod
    def from_records(cls, records: Iterable[ContributionRecord]) -> ContributionLedger:
        """Rebuild a ledger from stored rows."""
        return cls(list(records))
