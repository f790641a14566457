"""Update sketches and anomaly attribution: which department's update pulled the model off course.

``UpdateSketcher`` turns a delta into an ``UpdateSketch`` of at most 8192 numbers, so the
coordinator can keep one fingerprint per node (memory O(nodes × sketch)) while it still
aggregates in streaming mode. A model of at most ``dim`` elements is kept exactly; a larger
one goes through a count sketch (Charikar, Chen and Farach-Colton, "Finding Frequent Items
in Data Streams", ICALP 2002): coordinate ``i`` is added, with a random sign ``s(i)``, to
bucket ``h(i)``; both come from a fixed seed, so sketches of one job are comparable.
The sketch is linear and gives unbiased inner products with
``Var[<Sx, Sy>] ≤ 2·‖x‖²·‖y‖² / dim`` (see ``inner_error_bound`` and ``cosine_error_bound``).
The exact L2 norm of every update is kept beside its sketch.

``attribute_anomaly`` compares every node's update with a robust reference (the
coordinate-wise median of the round's sketches, or the aggregate the strategy produced)
and, when the round's metric falls by more than a threshold, names the departments whose
updates deviate most and what was done with them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from clawfed.aggregation.state import weights_sha256
from clawfed.core import ConfigError, JobError, TensorSpec, Weights

F64 = npt.NDArray[np.float64]

#: Largest sketch dimension; 8192 float64 numbers are 64 KiB per node.
MAX_SKETCH_DIM = 8192
_BLOCK = 1 << 20  # coordinates hashed per block
_CACHE_LIMIT = 1 << 22  # models up to 4 Mi elements keep their hashes (≈ 20 MiB)


def inner_error_bound(dim: int, failure_prob: float) -> float:
    """Bound ``t`` with ``P(|<Sx,Sy> − <x,y>| > t·‖x‖·‖y‖) ≤ failure_prob`` (Chebyshev).

    From ``Var[<Sx, Sy>] ≤ 2‖x‖²‖y‖²/dim``: ``t = sqrt(2 / (dim · failure_prob))``.
    """
    _check_dim(dim)
    if not 0.0 < failure_prob < 1.0:
        raise ConfigError(f"failure_prob must be in (0, 1), got {failure_prob!r}")
    return math.sqrt(2.0 / (dim * failure_prob))


def cosine_error_bound(dim: int, failure_prob: float) -> float:
    """Bound on ``|cos_sketch − cos|`` holding with probability ≥ ``1 − failure_prob``.

    With ``t = inner_error_bound(dim, failure_prob / 3)`` for ``<Sx,Sy>``, ``‖Sx‖²`` and
    ``‖Sy‖²`` of unit vectors (union bound), the ratio moves by at most ``2t / (1 − t)``;
    returns 2.0 (no information) when ``t ≥ 1/2``.
    """
    t = inner_error_bound(dim, failure_prob / 3.0)
    return 2.0 if t >= 0.5 else min(2.0, 2.0 * t / (1.0 - t))


def _check_dim(dim: int) -> None:
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_SKETCH_DIM:
        raise ConfigError(f"sketch dim must be an integer in [1, {MAX_SKETCH_DIM}], got {dim!r}")


@dataclass(frozen=True, eq=False)
class UpdateSketch:
    """A fixed-size fingerprint of one update.

    ``vector`` is the update itself (flattened, float64) when ``exact``, otherwise its count
    sketch; ``norm`` is the exact L2 norm of the update; ``digest`` the SHA-256 of its bytes
    (equal digests mean byte-identical updates); ``sketcher_id`` names the sketcher (model
    spec, dim, seed): only sketches with the same id can be compared.
    """

    vector: F64
    norm: float
    exact: bool
    digest: str
    sketcher_id: str

    @property
    def sketch_norm(self) -> float:
        """L2 norm of ``vector`` (equals ``norm`` when exact, estimates it otherwise)."""
        return float(np.linalg.norm(self.vector))

    def inner(self, other: UpdateSketch) -> float:
        """Estimate of the inner product of the two updates (exact when both are exact)."""
        _check_same(self, other)
        return float(np.dot(self.vector, other.vector))

    def cosine(self, other: UpdateSketch) -> float:
        """Estimated cosine similarity in [−1, 1]; 0.0 when either update is zero."""
        _check_same(self, other)
        return cosine(self.vector, other.vector)

    def distance(self, other: UpdateSketch) -> float:
        """Estimate of ``‖x − y‖``: the sketch is linear, so ``S(x − y) = Sx − Sy``."""
        _check_same(self, other)
        return float(np.linalg.norm(self.vector - other.vector))


def _check_same(a: UpdateSketch, b: UpdateSketch) -> None:
    if a.sketcher_id != b.sketcher_id:
        raise ConfigError(
            "sketches made by different sketchers (model spec, dim or seed) cannot be "
            f"compared: {a.sketcher_id[:12]} vs {b.sketcher_id[:12]}"
        )


def cosine(a: F64, b: F64) -> float:
    """Cosine similarity of two vectors, 0.0 when either is zero."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return max(-1.0, min(1.0, float(np.dot(a, b)) / (na * nb)))


class UpdateSketcher:
    """Makes ``UpdateSketch`` es for one model: exact up to ``dim`` elements, count sketch above.

    Parameters
    ----------
    spec
        The tensors of the model (names, dtypes, shapes), e.g. ``global_weights.spec()``.
    dim
        Sketch size in [1, 8192]; the cosine error is about ``sqrt(2 / dim)`` at most.
    seed
        Seed of the hash functions; sketches are comparable only under the same seed.
    """

    def __init__(
        self, spec: Sequence[TensorSpec], dim: int = MAX_SKETCH_DIM, seed: int = 0
    ) -> None:
        _check_dim(dim)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"sketch seed must be an integer >= 0, got {seed!r}")
        self._spec = tuple(spec)
        if not self._spec:
            raise ConfigError("cannot sketch updates of a model with no tensor")
        self._numel = sum(s.numel for s in self._spec)
        self._exact = self._numel <= dim
        self._dim = self._numel if self._exact else dim
        self._seed = seed
        ident = "|".join(f"{s.name}:{s.shape}" for s in self._spec) + f"|{dim}|{seed}"
        self._id = hashlib.sha256(ident.encode()).hexdigest()
        self._cache: dict[tuple[int, int], tuple[npt.NDArray[np.intp], F64]] = {}
        self._cache_ok = self._numel <= _CACHE_LIMIT

    @property
    def exact(self) -> bool:
        """Whether sketches hold the updates themselves (model of at most ``dim`` elements)."""
        return self._exact

    @property
    def dim(self) -> int:
        """Length of every sketch vector."""
        return self._dim

    @property
    def sketcher_id(self) -> str:
        """Identifier stamped on every sketch this sketcher makes."""
        return self._id

    def _hashes(self, tensor: int, block: int, size: int) -> tuple[npt.NDArray[np.intp], F64]:
        key = (tensor, block)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        rng = np.random.default_rng(np.random.SeedSequence([self._seed, tensor, block]))
        buckets = rng.integers(0, self._dim, size=size).astype(np.intp)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=size).astype(np.float64)
        if self._cache_ok:
            self._cache[key] = (buckets, signs)
        return buckets, signs

    def sketch(self, delta: Weights) -> UpdateSketch:
        """The sketch of ``delta``, which must match the model's spec."""
        delta.check_conforms(self._spec)
        digest = weights_sha256(delta)
        if self._exact:
            parts = [np.asarray(delta[s.name], dtype=np.float64).ravel() for s in self._spec]
            vec = np.concatenate(parts) if parts else np.zeros(0)
            return UpdateSketch(vec, float(np.linalg.norm(vec)), True, digest, self._id)
        out = np.zeros(self._dim, dtype=np.float64)
        sq = 0.0
        for t, s in enumerate(self._spec):
            flat = np.asarray(delta[s.name]).reshape(-1)
            for b, start in enumerate(range(0, flat.size, _BLOCK)):
                x = flat[start : start + _BLOCK].astype(np.float64)
                buckets, signs = self._hashes(t, b, x.size)
                out += np.bincount(buckets, weights=x * signs, minlength=self._dim)
                sq += float(np.dot(x, x))
        return UpdateSketch(out, math.sqrt(sq), False, digest, self._id)


class UpdateAction(StrEnum):
    """What the coordinator did with a node's update this round."""

    KEPT = "kept"
    DOWNWEIGHTED = "downweighted"
    REJECTED = "rejected"


@dataclass(frozen=True)
class NodeDeviation:
    """How far one node's update is from the round's robust reference.

    ``score = (1 − cosine) + |ln(norm_ratio)|``: 0 for an update along the reference with
    the round's median norm, 2 for one pointing the other way, +ln 10 ≈ 2.3 for ten times
    (or a tenth of) the median norm.
    """

    node_id: str
    department: str
    cosine: float
    norm: float
    norm_ratio: float
    score: float
    action: UpdateAction


@dataclass(frozen=True)
class AnomalySettings:
    """When a round counts as an anomaly and how suspects are named.

    ``metric`` is the round metric watched (e.g. ``accuracy``); an anomaly is a worsening of
    more than ``threshold`` (absolute) from the previous round. Suspects are nodes whose
    score has a robust z-score (median / MAD) of at least ``outlier_z``; if none has, the
    single highest-scored node is named. At most ``max_suspects`` are named.
    """

    metric: str = "accuracy"
    higher_is_better: bool = True
    threshold: float = 0.02
    outlier_z: float = 3.5
    max_suspects: int = 3

    def __post_init__(self) -> None:
        if not self.metric:
            raise ConfigError("anomaly metric must name a round metric, got ''")
        if not (math.isfinite(self.threshold) and self.threshold >= 0.0):
            raise ConfigError(
                f"anomaly threshold must be a finite number >= 0, got {self.threshold!r}"
            )
        if not (math.isfinite(self.outlier_z) and self.outlier_z > 0.0):
            raise ConfigError(
                f"anomaly outlier_z must be a finite number > 0, got {self.outlier_z!r}"
            )
        if isinstance(self.max_suspects, bool) or self.max_suspects < 1:
            raise ConfigError(
                f"anomaly max_suspects must be an integer >= 1, got {self.max_suspects!r}"
            )


@dataclass(frozen=True)
class AnomalyReport:
    """Per-node deviations of one round and, when the metric fell, the named suspects."""

    round_no: int
    metric: str
    previous: float | None
    current: float
    worsening: float
    triggered: bool
    deviations: tuple[NodeDeviation, ...]
    suspects: tuple[NodeDeviation, ...]

    def summary(self) -> str:
        """One line for a chat message or the audit chain (no data values, only statistics)."""
        if not self.triggered:
            return f"round {self.round_no}: {self.metric} {self.current:.4f}, no anomaly"
        names = "; ".join(
            f"{d.department or d.node_id} (cosine {d.cosine:+.2f}, norm ×{d.norm_ratio:.2g}, "
            f"{d.action})"
            for d in self.suspects
        )
        return (
            f"round {self.round_no}: {self.metric} worsened by {self.worsening:.4f} "
            f"({self.previous:.4f} → {self.current:.4f}); most deviating: {names}"
        )


def robust_reference(sketches: Sequence[UpdateSketch]) -> F64:
    """Coordinate-wise median of the sketch vectors: a reference direction few nodes can move.

    Exact sketches give the coordinate-wise median of the updates; count sketches give the
    median in sketch space, a robust direction but not the sketch of the median update.
    """
    if not sketches:
        raise JobError("a robust reference needs at least one update sketch, got none")
    for s in sketches[1:]:
        _check_same(s, sketches[0])
    return np.asarray(np.median(np.stack([s.vector for s in sketches]), axis=0))


def node_deviations(
    sketches: Mapping[str, UpdateSketch],
    reference: F64 | None = None,
    *,
    departments: Mapping[str, str] | None = None,
    actions: Mapping[str, UpdateAction] | None = None,
) -> tuple[NodeDeviation, ...]:
    """Cosine to ``reference`` (default: ``robust_reference``) and norm ratio of every update.

    Returned highest score first (ties by node id). ``norm_ratio`` divides by the median norm
    of the round (1.0 for every node when that median is 0).
    """
    if not sketches:
        return ()
    ids = sorted(sketches)
    ref = robust_reference([sketches[i] for i in ids]) if reference is None else reference
    if ref.shape != sketches[ids[0]].vector.shape:
        raise ConfigError(
            f"reference has shape {ref.shape}, the sketches {sketches[ids[0]].vector.shape}"
        )
    med = float(np.median([sketches[i].norm for i in ids]))
    depts = departments or {}
    acts = actions or {}
    out = []
    for i in ids:
        s = sketches[i]
        cos = cosine(s.vector, ref)
        ratio = 1.0 if med == 0.0 else s.norm / med
        log_ratio = math.log(ratio) if ratio > 0.0 else math.log(1e-12)
        out.append(
            NodeDeviation(
                i,
                depts.get(i, ""),
                cos,
                s.norm,
                ratio,
                (1.0 - cos) + abs(log_ratio),
                acts.get(i, UpdateAction.KEPT),
            )
        )
    return tuple(sorted(out, key=lambda d: (-d.score, d.node_id)))


def _outliers(devs: Sequence[NodeDeviation], z: float) -> list[NodeDeviation]:
    scores = np.array([d.score for d in devs])
    med = float(np.median(scores))
    mad = 1.4826 * float(np.median(np.abs(scores - med)))
    if mad == 0.0:
        return [d for d in devs if d.score > med + 1e-9]
    return [d for d in devs if (d.score - med) / mad >= z]


def attribute_anomaly(
    round_no: int,
    previous: float | None,
    current: float,
    sketches: Mapping[str, UpdateSketch],
    *,
    settings: AnomalySettings | None = None,
    reference: F64 | None = None,
    departments: Mapping[str, str] | None = None,
    actions: Mapping[str, UpdateAction] | None = None,
) -> AnomalyReport:
    """Deviations of the round's updates and, if the metric worsened too much, the suspects.

    Parameters
    ----------
    round_no
        The round being reported.
    previous, current
        The watched metric after the previous round (None in the first round) and this one.
    sketches
        Node id → sketch of the update it sent this round (kept, downweighted or rejected).
    reference
        A robust aggregate's sketch vector; by default the coordinate-wise median of
        ``sketches``. Do not pass a plain mean: a large malicious update dominates it.
    departments, actions
        Node id → department name, and what was done with each update (default kept).
    """
    cfg = settings or AnomalySettings()
    if not math.isfinite(current) or (previous is not None and not math.isfinite(previous)):
        raise ConfigError(
            f"{cfg.metric} must be finite, got previous={previous}, current={current}"
        )
    devs = node_deviations(sketches, reference, departments=departments, actions=actions)
    if previous is None:
        worsening = 0.0
    else:
        worsening = (previous - current) if cfg.higher_is_better else (current - previous)
    triggered = previous is not None and worsening > cfg.threshold and bool(devs)
    suspects: list[NodeDeviation] = []
    if triggered:
        suspects = _outliers(devs, cfg.outlier_z) or [devs[0]]
    return AnomalyReport(
        round_no,
        cfg.metric,
        previous,
        current,
        worsening,
        triggered,
        devs,
        tuple(suspects[: cfg.max_suspects]),
    )
