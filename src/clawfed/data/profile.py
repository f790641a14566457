"""A dataset's quality profile: metadata that may leave the node because it holds no row values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pandas as pd

from clawfed.core.errors import DataError
from clawfed.data.dataset import DatasetSpec, check_columns
from clawfed.data.encode import Task, resolve_types
from clawfed.data.schema import ColumnType, category_key

#: Weights of the parts of the quality score; they sum to 1.
WEIGHT_COMPLETENESS = 0.4
WEIGHT_BALANCE = 0.2
WEIGHT_UNIQUE = 0.2
WEIGHT_VARYING = 0.2


def _unit(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise DataError(f"profile: {name} must be in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class DataQuality:
    """The quality score and its parts, each in [0, 1]; see ``profile`` for the formula."""

    score: float
    completeness: float
    label_balance: float
    duplicate_rate: float
    constant_fraction: float

    def __post_init__(self) -> None:
        for name in (
            "score",
            "completeness",
            "label_balance",
            "duplicate_rate",
            "constant_fraction",
        ):
            _unit(name, getattr(self, name))

    @classmethod
    def from_parts(
        cls, completeness: float, label_balance: float, duplicate_rate: float, constant: float
    ) -> DataQuality:
        """Combine the parts into the weighted score."""
        score = (
            WEIGHT_COMPLETENESS * completeness
            + WEIGHT_BALANCE * label_balance
            + WEIGHT_UNIQUE * (1.0 - duplicate_rate)
            + WEIGHT_VARYING * (1.0 - constant)
        )
        return cls(min(max(score, 0.0), 1.0), completeness, label_balance, duplicate_rate, constant)


@dataclass(frozen=True)
class DatasetProfile:
    """Schema, size, missing rates, label balance and quality of one dataset; no row values.

    ``label_balance`` is keyed by the target's class labels (the task's label vocabulary);
    no feature value, and in particular no category name, appears anywhere.
    """

    dataset: str
    rows: int
    target: str
    schema: Mapping[str, ColumnType]
    missing_rate: Mapping[str, float]
    label_balance: Mapping[str, float]
    quality: DataQuality

    def __post_init__(self) -> None:
        if self.rows < 0:
            raise DataError(f"profile: rows must be >= 0, got {self.rows}")
        if set(self.missing_rate) != set(self.schema):
            raise DataError("profile: missing_rate must name exactly the columns of schema")
        for col, rate in self.missing_rate.items():
            _unit(f"missing_rate[{col!r}]", rate)
        for label, share in self.label_balance.items():
            _unit(f"label_balance[{label!r}]", share)
        object.__setattr__(self, "schema", MappingProxyType(dict(self.schema)))
        object.__setattr__(self, "missing_rate", MappingProxyType(dict(self.missing_rate)))
        object.__setattr__(self, "label_balance", MappingProxyType(dict(self.label_balance)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (``json.dumps`` works on it as is)."""
        return {
            "dataset": self.dataset,
            "rows": self.rows,
            "target": self.target,
            "schema": {c: str(t) for c, t in self.schema.items()},
            "missing_rate": dict(self.missing_rate),
            "label_balance": dict(self.label_balance),
            "quality": {
                "score": self.quality.score,
                "completeness": self.quality.completeness,
                "label_balance": self.quality.label_balance,
                "duplicate_rate": self.quality.duplicate_rate,
                "constant_fraction": self.quality.constant_fraction,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetProfile:
        """Rebuild a profile from ``to_dict`` output, validating every field."""
        try:
            quality = DataQuality(**{k: float(v) for k, v in data["quality"].items()})
            return cls(
                dataset=str(data["dataset"]),
                rows=int(data["rows"]),
                target=str(data["target"]),
                schema={str(c): ColumnType(t) for c, t in data["schema"].items()},
                missing_rate={str(c): float(r) for c, r in data["missing_rate"].items()},
                label_balance={str(k): float(v) for k, v in data["label_balance"].items()},
                quality=quality,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"profile: malformed profile record: {exc!r}") from exc


def profile(frame: pd.DataFrame, spec: DatasetSpec) -> DatasetProfile:
    """Profile the spec's columns (target and features) of ``frame``; other columns are ignored.

    Pass the frame before imputation (``Harmonization.prepare``) to see true missing rates.
    The quality score is a weighted mean of four parts, each in [0, 1]::

        completeness C = 1 - missing cells / (rows * columns)          (target and features)
        balance      B = H(p) / ln(k), the Shannon entropy of the class shares p over the
                         k >= 2 classes present, normalised (B = 0 with one class,
                         B = 1 for regression)
        duplicates   D = share of rows equal, in every profiled column, to an earlier row
        constant     K = share of features with at most one distinct non-missing value
        score        = 0.4 C + 0.2 B + 0.2 (1 - D) + 0.2 (1 - K)

    Parameters
    ----------
    frame
        The dataset's rows (harmonized names).
    spec
        Names the target, the features and their declared types.

    Returns
    -------
    DatasetProfile
        Metadata only: no cell value, no category name.
    """
    check_columns(frame, spec)
    rows = len(frame)
    if rows == 0:
        raise DataError(f"dataset {spec.name!r} is empty: nothing to profile")
    columns = [spec.target, *spec.features]
    part = frame[columns]
    schema = resolve_types(part, columns, spec.declared_types())
    missing = {c: float(part[c].isna().mean()) for c in columns}
    completeness = 1.0 - float(part.isna().to_numpy().mean())
    balance_map, balance = _label_balance(part[spec.target], spec.task)
    duplicate_rate = float(part.duplicated().mean())
    constant = sum(1 for c in spec.features if part[c].nunique(dropna=True) <= 1)
    quality = DataQuality.from_parts(
        _clip(completeness), balance, _clip(duplicate_rate), constant / len(spec.features)
    )
    return DatasetProfile(
        dataset=spec.name,
        rows=rows,
        target=spec.target,
        schema=schema,
        missing_rate=missing,
        label_balance=balance_map,
        quality=quality,
    )


def _label_balance(target: pd.Series, task: Task) -> tuple[dict[str, float], float]:
    if task is Task.REGRESSION:
        return {}, 1.0
    present = target.dropna()
    if len(present) == 0:
        return {}, 0.0
    counts: dict[str, int] = {}
    for value, n in present.value_counts(sort=False).items():
        key = category_key(value)
        counts[key] = counts.get(key, 0) + int(n)
    total = sum(counts.values())
    shares = {k: counts[k] / total for k in sorted(counts)}
    if len(shares) < 2:
        return shares, 0.0
    entropy = -sum(p * math.log(p) for p in shares.values() if p > 0)
    return shares, _clip(entropy / math.log(len(shares)))


def _clip(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)
