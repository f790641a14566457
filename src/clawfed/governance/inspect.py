"""Read-side questions about model versions: lookups, metric and weight diffs, who moved a model."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from clawfed.core.errors import ConfigError, NotFoundError, StoreError
from clawfed.core.weights import Weights
from clawfed.governance.jobs import JobRecord, JobStore
from clawfed.governance.registry import ModelRegistry, ModelVersion
from clawfed.governance.rounds import RoundRecord, RoundStatus

#: Round metrics whose name starts with this are per-node update diagnostics, not scores.
DIAG_PREFIX = "diag."
NORM_SUFFIX = ".norm"
COSINE_SUFFIX = ".cosine"
#: Metrics where a larger value is better; only these can "drop".
HIGHER_IS_BETTER: tuple[str, ...] = ("roc_auc", "accuracy", "f1", "precision", "recall")
#: The metrics ``metric_dropped`` looks at, in this order, when none is named.
DEFAULT_DROP_METRICS: tuple[str, ...] = ("roc_auc", "accuracy")
#: Label of the combined (all-department) metrics in a metric diff.
ALL_DEPARTMENTS = "(combined)"
_COSINE_SLACK = 1e-6
_LISTED = 20


def diagnostic_keys(node_id: str) -> tuple[str, str]:
    """The round-metric names holding ``node_id``'s update norm and cosine to the aggregate."""
    return f"{DIAG_PREFIX}{node_id}{NORM_SUFFIX}", f"{DIAG_PREFIX}{node_id}{COSINE_SUFFIX}"


def without_diagnostics(metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` minus the ``diag.*`` entries: what the model scored."""
    return {k: float(v) for k, v in metrics.items() if not k.startswith(DIAG_PREFIX)}


def diagnostics_from_metrics(metrics: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Node id -> (update L2 norm, cosine to the aggregate) read from ``diag.*`` metrics.

    Raises
    ------
    StoreError
        When a ``diag.*`` name is neither ``.norm`` nor ``.cosine``, a node has only one of
        the two, the norm is negative or not finite, or the cosine lies outside [-1, 1].
    """
    norms: dict[str, float] = {}
    cosines: dict[str, float] = {}
    for key, value in metrics.items():
        if not key.startswith(DIAG_PREFIX):
            continue
        rest = key.removeprefix(DIAG_PREFIX)
        if rest.endswith(NORM_SUFFIX) and len(rest) > len(NORM_SUFFIX):
            norms[rest.removesuffix(NORM_SUFFIX)] = float(value)
        elif rest.endswith(COSINE_SUFFIX) and len(rest) > len(COSINE_SUFFIX):
            cosines[rest.removesuffix(COSINE_SUFFIX)] = float(value)
        else:
            raise StoreError(
                f"diagnostic metric {key!r} must be named diag.<node_id>.norm or "
                "diag.<node_id>.cosine"
            )
    lonely = sorted(set(norms) ^ set(cosines))
    if lonely:
        raise StoreError(
            f"update diagnostics need both .norm and .cosine per node; incomplete for "
            f"{', '.join(lonely)}"
        )
    return {n: _check_diagnostic(n, norms[n], cosines[n]) for n in sorted(norms)}


def _check_diagnostic(node_id: str, norm: float, cosine: float) -> tuple[float, float]:
    if not math.isfinite(norm) or norm < 0.0:
        raise StoreError(f"update norm of {node_id} must be finite and >= 0, got {norm!r}")
    if not math.isfinite(cosine) or abs(cosine) > 1.0 + _COSINE_SLACK:
        raise StoreError(f"update cosine of {node_id} must be in [-1, 1], got {cosine!r}")
    return norm, max(-1.0, min(1.0, cosine))


@dataclass(frozen=True)
class Influence:
    """The node whose update moved the global model most, and by how much."""

    node_id: str
    norm: float
    cosine: float
    share: float


def step_shares(
    diagnostics: Mapping[str, tuple[float, float]],
    *,
    weights: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Each node's share ``wᵢ ‖Δᵢ‖ cos(Δᵢ, Δ)`` of the step the global model took.

    With ``Δ = Σ wᵢ Δᵢ`` the aggregate step (FedAvg, McMahan et al., "Communication-Efficient
    Learning of Deep Networks from Decentralized Data", AISTATS 2017, with ``wᵢ = nᵢ / Σ n``),
    projecting both sides on ``Δ`` gives ``‖Δ‖ = Σ wᵢ ‖Δᵢ‖ cos(Δᵢ, Δ)``: the shares split the
    distance the model actually moved exactly among the nodes, and a negative share pulled
    against the step. For strategies that are not weighted means (median, Krum) this is a
    first-order attribution, not an identity.

    Parameters
    ----------
    diagnostics:
        Node id -> (``‖Δᵢ‖``, ``cos(Δᵢ, Δ)``), e.g. from :func:`diagnostics_from_metrics`.
    weights:
        Node id -> aggregation weight (e.g. sample count); normalized here. Equal if omitted.

    Raises
    ------
    StoreError
        For no diagnostics, an out-of-range value, or weights missing a node or not > 0 in sum.
    """
    if not diagnostics:
        raise StoreError("step shares need the diagnostics of at least one node, got none")
    checked = {n: _check_diagnostic(n, float(v[0]), float(v[1])) for n, v in diagnostics.items()}
    if weights is None:
        w = {n: 1.0 / len(checked) for n in checked}
    else:
        missing = sorted(set(checked) - set(weights))
        if missing:
            raise StoreError(f"no aggregation weight for node(s) {', '.join(missing)}")
        raw = {n: float(weights[n]) for n in checked}
        total = sum(raw.values())
        if any(not math.isfinite(v) or v < 0.0 for v in raw.values()) or not total > 0.0:
            raise StoreError(f"aggregation weights must be finite, >= 0 and not all 0, got {raw}")
        w = {n: v / total for n, v in raw.items()}
    return {n: w[n] * norm * cos for n, (norm, cos) in checked.items()}


def most_influential(
    diagnostics: Mapping[str, tuple[float, float]],
    *,
    weights: Mapping[str, float] | None = None,
) -> Influence:
    """The node whose update moved the global model most: the largest :func:`step_shares`.

    The share measures how far the model went because of a node's update. Unlike the raw
    norm ``‖Δᵢ‖`` it ignores the parts of updates that cancel out in the aggregate, and unlike
    ``‖Δᵢ‖ (1 − cos)`` it measures movement, not disagreement with the others. Ties go to the
    smallest node id. Arguments and errors are those of :func:`step_shares`.
    """
    shares = step_shares(diagnostics, weights=weights)
    best = min(shares, key=lambda n: (-shares[n], n))
    norm, cos = _check_diagnostic(best, float(diagnostics[best][0]), float(diagnostics[best][1]))
    return Influence(best, norm, cos, shares[best])


@dataclass(frozen=True)
class MetricDrop:
    """A higher-is-better metric that fell from a version's parent to the version."""

    metric: str
    parent_value: float
    value: float

    @property
    def drop(self) -> float:
        """How much it fell (> 0)."""
        return self.parent_value - self.value


def metric_dropped(
    version: ModelVersion,
    parent: ModelVersion,
    metric: str | None = None,
    threshold: float = 0.0,
) -> MetricDrop | None:
    """The fall of ``metric`` from ``parent`` to ``version`` if larger than ``threshold``.

    Without ``metric`` the first of ``DEFAULT_DROP_METRICS`` that both versions report is
    used. ``None`` when the metric did not fall by more than ``threshold`` or is missing.

    Raises
    ------
    ConfigError
        When ``metric`` is not one of ``HIGHER_IS_BETTER`` or ``threshold`` is not >= 0.
    """
    if metric is not None and metric not in HIGHER_IS_BETTER:
        raise ConfigError(
            f"a metric drop is checked on one of {', '.join(HIGHER_IS_BETTER)}, got {metric!r}"
        )
    if not math.isfinite(threshold) or threshold < 0.0:
        raise ConfigError(f"drop threshold must be a finite number >= 0, got {threshold!r}")
    after, before = without_diagnostics(version.metrics), without_diagnostics(parent.metrics)
    names = (metric,) if metric is not None else DEFAULT_DROP_METRICS
    name = next((m for m in names if m in after and m in before), None)
    if name is None or before[name] - after[name] <= threshold:
        return None
    return MetricDrop(name, before[name], after[name])


@dataclass(frozen=True)
class MetricDelta:
    """One metric of one department (or ``ALL_DEPARTMENTS``) in two versions."""

    scope: str
    metric: str
    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        """``after - before``, or ``None`` when one side lacks the metric."""
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


def metric_deltas(a: ModelVersion, b: ModelVersion) -> list[MetricDelta]:
    """Combined and per-department metrics of ``a`` and ``b`` side by side, sorted by name."""
    out = _scope_deltas(ALL_DEPARTMENTS, a.metrics, b.metrics)
    for dept in sorted(set(a.department_metrics) | set(b.department_metrics)):
        out += _scope_deltas(
            dept, a.department_metrics.get(dept, {}), b.department_metrics.get(dept, {})
        )
    return out


def _scope_deltas(
    scope: str, before: Mapping[str, float], after: Mapping[str, float]
) -> list[MetricDelta]:
    x, y = without_diagnostics(before), without_diagnostics(after)
    return [MetricDelta(scope, m, x.get(m), y.get(m)) for m in sorted(set(x) | set(y))]


@dataclass(frozen=True)
class TensorDiff:
    """L2 norms of one tensor in two models; ``None`` where it is absent or shapes differ."""

    name: str
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    norm_a: float | None
    norm_b: float | None
    diff_norm: float | None

    @property
    def norm_delta(self) -> float | None:
        """``‖b‖ - ‖a‖``, or ``None`` when one side lacks the tensor."""
        if self.norm_a is None or self.norm_b is None:
            return None
        return self.norm_b - self.norm_a


@dataclass(frozen=True)
class WeightsDiff:
    """Per-tensor diffs and the norms over all tensors (``diff_norm`` over comparable ones)."""

    tensors: tuple[TensorDiff, ...]
    norm_a: float
    norm_b: float
    diff_norm: float

    @property
    def norm_delta(self) -> float:
        """``‖b‖ - ‖a‖`` over all tensors."""
        return self.norm_b - self.norm_a


def weights_diff(a: Weights, b: Weights) -> WeightsDiff:
    """Compare two models tensor by tensor: ``‖a‖``, ``‖b‖`` and ``‖b - a‖`` (in float64).

    Tensors of ``a`` come first in its order, then those only in ``b``. A tensor in one
    model only, or with another shape, has no ``diff_norm`` and is left out of the total's.
    """
    rows: list[TensorDiff] = []
    sq_a = sq_b = sq_d = 0.0
    for name in [*a, *(n for n in b if n not in a)]:
        x = np.asarray(a[name], dtype=np.float64) if name in a else None
        y = np.asarray(b[name], dtype=np.float64) if name in b else None
        na = float(np.linalg.norm(x.ravel())) if x is not None else None
        nb = float(np.linalg.norm(y.ravel())) if y is not None else None
        nd = None
        if x is not None and y is not None and x.shape == y.shape:
            nd = float(np.linalg.norm((y - x).ravel()))
            sq_d += nd * nd
        sq_a += (na or 0.0) ** 2
        sq_b += (nb or 0.0) ** 2
        rows.append(
            TensorDiff(
                name,
                tuple(x.shape) if x is not None else None,
                tuple(y.shape) if y is not None else None,
                na,
                nb,
                nd,
            )
        )
    return WeightsDiff(tuple(rows), math.sqrt(sq_a), math.sqrt(sq_b), math.sqrt(sq_d))


class ArtifactCheck(StrEnum):
    """Whether a version's file is still what the registry recorded."""

    VERIFIED = "verified"
    MISSING = "missing"
    MISMATCH = "digest mismatch"


def check_artifact(path: Path, sha256: str) -> ArtifactCheck:
    """Hash the file at ``path`` and compare it with the recorded ``sha256``."""
    try:
        with Path(path).open("rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except FileNotFoundError:
        return ArtifactCheck.MISSING
    except OSError as exc:
        raise StoreError(f"cannot read artifact {path}: {exc}") from exc
    return ArtifactCheck.VERIFIED if digest == sha256.lower() else ArtifactCheck.MISMATCH


def find_job(jobs: JobStore, ref: str) -> JobRecord:
    """The job whose id or name is ``ref``; ``NotFoundError`` naming the known jobs otherwise."""
    every = jobs.list()
    for job in every:
        if ref in (job.job_id, job.name):
            return job
    known = _listing([j.job_id for j in every]) or "none yet"
    raise NotFoundError(f"no job {ref!r}; known jobs: {known}")


def resolve_version(registry: ModelRegistry, jobs: JobStore, ref: str) -> ModelVersion:
    """The version ``ref`` (``JOB@vN`` or ``JOB@latest``) with a helpful error if absent.

    Raises
    ------
    NotFoundError
        Naming the job's versions when the number is wrong, the known jobs when the job is.
    """
    name, at, tag = ref.rpartition("@")
    if not at:
        job = find_job(jobs, ref)
        raise NotFoundError(
            f"{ref!r} is a job, not a version (version ids look like JOB@vN or JOB@latest); "
            f"{_versions_text(registry, job)}"
        )
    job = find_job(jobs, name)
    if tag == "latest":
        versions = registry.list(job.job_id)
        if not versions:
            raise NotFoundError(f"job {job.job_id!r} has no model versions yet")
        return versions[-1]
    try:
        return registry.get(ref)
    except NotFoundError:
        raise NotFoundError(
            f"model version {ref!r} does not exist; {_versions_text(registry, job)}"
        ) from None


def _versions_text(registry: ModelRegistry, job: JobRecord) -> str:
    ids = [v.version_id for v in registry.list(job.job_id)]
    if not ids:
        return f"job {job.job_id!r} has no model versions yet"
    return f"job {job.job_id!r} has versions {_listing(ids)}"


def _listing(items: Sequence[str]) -> str:
    if len(items) <= _LISTED:
        return ", ".join(items)
    head = ", ".join(items[: _LISTED // 2])
    tail = ", ".join(items[-_LISTED // 2 :])
    return f"{head}, … ({len(items) - _LISTED} more) …, {tail}"


def version_round(jobs: JobStore, version: ModelVersion) -> RoundRecord | None:
    """The completed round attempt that produced ``version`` (``None`` if not recorded)."""
    for record in jobs.rounds(version.job_id):
        if record.status is RoundStatus.COMPLETED and record.version_id == version.version_id:
            return record
    return None
