"""Federated feature standardization: nodes share per-feature moments, never rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clawfed.core.errors import DataError

F64 = npt.NDArray[np.float64]

#: A std below ``STD_FLOOR * max(1, |mean|)`` marks a constant feature; its std becomes 1.
STD_FLOOR = 1e-12
#: ``local_moments`` refuses fewer rows than this: with a handful of rows, sums reveal them.
MIN_ROWS = 10


def _vector(name: str, values: Any) -> F64:
    arr = np.array(values, dtype=np.float64)
    if arr.ndim != 1:
        raise DataError(f"moments: {name} must be a 1-D vector, got shape {arr.shape}")
    if not bool(np.isfinite(arr).all()):
        raise DataError(
            f"moments: {name} holds {int((~np.isfinite(arr)).sum())} non-finite value(s)"
        )
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Moments:
    """One node's row count, per-feature sum, and per-feature sum of squared deviations
    from the node's own mean (``m2``), all float64.

    ``m2`` rather than the raw sum of squares: pooling raw sums loses the variance to
    cancellation when a feature's mean is large against its spread (a constant feature of
    1000.3 comes out with std 1.5e-5 instead of 0), while the centred form combines exactly
    (Chan, Golub and LeVeque, "Updating formulae and a pairwise algorithm for computing
    sample variances", 1979). Both forms reveal the same information.
    """

    count: int
    sum: F64
    m2: F64

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or int(self.count) != self.count or self.count < 0:
            raise DataError(f"moments: count must be an integer >= 0, got {self.count!r}")
        object.__setattr__(self, "count", int(self.count))
        object.__setattr__(self, "sum", _vector("sum", self.sum))
        object.__setattr__(self, "m2", _vector("m2", self.m2))
        if self.sum.shape != self.m2.shape:
            raise DataError(
                f"moments: sum has {self.sum.shape[0]} feature(s) but m2 has {self.m2.shape[0]}"
            )
        if bool((self.m2 < 0).any()):
            raise DataError("moments: m2 must be >= 0 for every feature")
        if self.count == 0 and bool((self.sum != 0).any() or (self.m2 != 0).any()):
            raise DataError("moments: count is 0 but sum or m2 is not zero")

    @property
    def num_features(self) -> int:
        """Number of features."""
        return int(self.sum.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {"count": self.count, "sum": self.sum.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Moments:
        """Rebuild (and validate) moments from ``to_dict`` output."""
        try:
            return cls(count=data["count"], sum=data["sum"], m2=data["m2"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"moments: malformed record: {exc!r}") from exc


def local_moments(features: npt.ArrayLike, *, min_rows: int = MIN_ROWS) -> Moments:
    """Sums a node shares so that the federation can standardize features.

    Parameters
    ----------
    features
        ``(rows, features)`` matrix; summed in float64.
    min_rows
        Refuse fewer rows than this (sums over a few rows give the rows away).

    Returns
    -------
    Moments
        Count, per-feature sum and per-feature sum of squared deviations from the mean
        (computed in two passes).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(f"local_moments needs a 2-D (rows, features) matrix, got {x.ndim}-D")
    if x.shape[0] < min_rows:
        raise DataError(
            f"local_moments needs at least {min_rows} rows so that the sums do not reveal "
            f"individual rows, got {x.shape[0]}"
        )
    bad = int((~np.isfinite(x)).sum())
    if bad:
        raise DataError(f"local_moments: features hold {bad} NaN or infinite value(s)")
    total = x.sum(axis=0)
    centred = x - total / x.shape[0]
    return Moments(count=x.shape[0], sum=total, m2=np.square(centred).sum(axis=0))


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature ``mean`` and ``std`` (float64); ``transform`` maps X to ``(X - mean) / std``."""

    mean: F64
    std: F64

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _vector("mean", self.mean))
        object.__setattr__(self, "std", _vector("std", self.std))
        if self.mean.shape != self.std.shape:
            raise DataError(
                f"standardizer: mean has {self.mean.shape[0]} feature(s) but std has "
                f"{self.std.shape[0]}"
            )
        if bool((self.std <= 0).any()):
            raise DataError("standardizer: every std must be > 0")

    @property
    def num_features(self) -> int:
        """Number of features."""
        return int(self.mean.shape[0])

    def transform(self, features: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        """Standardize a ``(rows, features)`` matrix; float32 in gives float32 out, else float64.

        Parameters
        ----------
        features
            Rows to transform; not modified.

        Returns
        -------
        numpy.ndarray
            A new standardized matrix.
        """
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise DataError(
                f"standardizer expects (rows, {self.num_features}) features, got shape {x.shape}"
            )
        out = (x.astype(np.float64) - self.mean) / self.std
        return out.astype(np.float32) if x.dtype == np.float32 else out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Standardizer:
        """Rebuild (and validate) a standardizer from ``to_dict`` output."""
        try:
            return cls(mean=data["mean"], std=data["std"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"standardizer: malformed record: {exc!r}") from exc


def combine(moments: Sequence[Moments]) -> Standardizer:
    """Pool the nodes' moments into the mean and (population) std of the union of their rows.

    With ``n_k``, ``mean_k = sum_k / n_k`` and ``m2_k`` per node, ``N = sum n_k``::

        mean = sum_k(sum_k) / N
        var  = (sum_k(m2_k) + sum_k(n_k * (mean_k - mean)**2)) / N

    (the parallel form of Chan, Golub and LeVeque, 1979): every term is non-negative, so no
    cancellation. A feature whose std is below ``STD_FLOOR * max(1, |mean|)`` (constant up
    to rounding) gets std 1, so ``transform`` only centres it.

    Parameters
    ----------
    moments
        One ``Moments`` per node, all with the same number of features.

    Returns
    -------
    Standardizer
        The pooled mean and std, in float64.
    """
    if not moments:
        raise DataError("combine needs the moments of at least one node, got none")
    widths = sorted({m.num_features for m in moments})
    if len(widths) != 1:
        raise DataError(f"combine: nodes report different feature counts {widths}")
    present = [m for m in moments if m.count > 0]
    count = sum(m.count for m in present)
    if count == 0:
        raise DataError("combine: the nodes' moments cover 0 rows in total")
    counts = np.array([m.count for m in present], dtype=np.float64)[:, None]
    sums = np.stack([m.sum for m in present])
    mean = sums.sum(axis=0) / count
    spread = np.square(sums / counts - mean)
    m2 = np.stack([m.m2 for m in present]).sum(axis=0) + (counts * spread).sum(axis=0)
    std = np.sqrt(m2 / count)
    std = np.where(std < STD_FLOOR * np.maximum(1.0, np.abs(mean)), 1.0, std)
    return Standardizer(mean=mean, std=std)
