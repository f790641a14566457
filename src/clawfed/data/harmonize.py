"""A department's mapping of its own table onto the federation's shared columns and scales."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Self

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clawfed.core.errors import ConfigError, DataError
from clawfed.core.validation import describe_errors
from clawfed.data.schema import category_key

#: A single cell value a rule may name (a fill value, a missing-value marker).
Scalar = bool | int | float | str
ColumnName = Annotated[str, Field(min_length=1)]

#: Suffix of the 0/1 column that marks which cells an imputation rule filled.
INDICATOR_SUFFIX = "__missing"


class ScaleRule(BaseModel):
    """Linear map of a rating from the department's range ``from`` onto the shared range ``to``."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_: tuple[float, float] = Field(alias="from")
    to: tuple[float, float]

    @model_validator(mode="after")
    def _check_ranges(self) -> Self:
        for name, pair in (("from", self.from_), ("to", self.to)):
            if not all(math.isfinite(v) for v in pair):
                raise ValueError(f"scale `{name}` must hold finite numbers, got {list(pair)}")
        if not self.from_[0] < self.from_[1]:
            raise ValueError(
                f"scale `from` must be [low, high] with low < high, got {list(self.from_)}"
            )
        if self.to[0] == self.to[1]:
            raise ValueError(f"scale `to` must span a range, got {list(self.to)}")
        return self


class ImputeStrategy(StrEnum):
    """How the fill value of a column is chosen."""

    MEDIAN = "median"
    MODE = "mode"
    CONSTANT = "constant"


class ImputeRule(BaseModel):
    """Fill a column's missing cells; ``indicator`` adds a ``<col>__missing`` 0/1 column."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: ImputeStrategy
    value: Scalar | None = None
    indicator: bool = False

    @model_validator(mode="after")
    def _check_value(self) -> Self:
        if self.strategy is ImputeStrategy.CONSTANT and self.value is None:
            raise ValueError("impute strategy `constant` needs a `value`")
        if self.strategy is not ImputeStrategy.CONSTANT and self.value is not None:
            raise ValueError(
                f"impute strategy `{self.strategy}` computes its value; remove `value: "
                f"{self.value!r}` or use strategy `constant`"
            )
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError(f"impute `value` must be finite, got {self.value}")
        return self


class Harmonization(BaseModel):
    """The node-side mapping file of one dataset.

    The steps run in this order, and every step after ``renames`` names columns by their
    new (shared) names:

    1. ``renames``: ``{old: new}`` column names;
    2. ``missing_values``: ``{col: [markers]}`` cells equal to a marker (``-1``) become missing;
    3. ``scales``: ``{col: {from: [1, 5], to: [0, 1]}}`` linear maps of ratings;
    4. ``impute``: ``{col: {strategy: median|mode|constant, value: ..., indicator: true}}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    renames: dict[ColumnName, ColumnName] = Field(default_factory=dict)
    missing_values: dict[ColumnName, tuple[Scalar, ...]] = Field(default_factory=dict)
    scales: dict[ColumnName, ScaleRule] = Field(default_factory=dict)
    impute: dict[ColumnName, ImputeRule] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_renames(self) -> Self:
        seen: dict[str, str] = {}
        for old, new in self.renames.items():
            if new in seen:
                raise ValueError(f"renames map both {seen[new]!r} and {old!r} onto {new!r}")
            seen[new] = old
        return self

    def fit(self, frame: pd.DataFrame, *, dataset: str | None = None) -> FittedHarmonization:
        """Compute the imputation fill values on ``frame`` (the node's local training rows).

        Parameters
        ----------
        frame
            The department's table as read; it is not modified.
        dataset
            Name used in error messages.

        Returns
        -------
        FittedHarmonization
            This mapping together with its fill values, ready to ``apply`` to any rows.
        """
        prepared = self.prepare(frame, dataset=dataset)
        fills = {
            col: _fill_value(prepared, col, rule, _prefix(dataset))
            for col, rule in self.impute.items()
        }
        return FittedHarmonization(self, MappingProxyType(fills), dataset)

    def apply(self, frame: pd.DataFrame, *, dataset: str | None = None) -> pd.DataFrame:
        """Harmonize ``frame``, imputing with statistics computed on ``frame`` itself.

        Parameters
        ----------
        frame
            The department's table; it is not modified.
        dataset
            Name used in error messages.

        Returns
        -------
        pandas.DataFrame
            A new frame in the federation's shared columns and scales.
        """
        return self.fit(frame, dataset=dataset).apply(frame)

    def prepare(self, frame: pd.DataFrame, *, dataset: str | None = None) -> pd.DataFrame:
        """Apply the steps that need no statistics: renames, missing-value markers, scales.

        Parameters
        ----------
        frame
            The department's rows; they are not modified.
        dataset
            Name used in error messages.

        Returns
        -------
        pandas.DataFrame
            A new frame, still holding missing cells.
        """
        where = _prefix(dataset)
        out = frame.copy(deep=True)
        if self.renames:
            _require(out, self.renames.keys(), where, "renames")
            staying = set(out.columns) - set(self.renames)
            clash = sorted(new for new in self.renames.values() if new in staying)
            if clash:
                raise DataError(
                    f"{where}renames would overwrite existing column(s) {clash}; "
                    "rename or drop those first"
                )
            out = out.rename(columns=self.renames)
        _require(out, self.missing_values.keys(), where, "missing_values")
        for col, markers in self.missing_values.items():
            out[col] = out[col].mask(_matches(out[col], markers))
        _require(out, self.scales.keys(), where, "scales")
        for col, rule in self.scales.items():
            out[col] = _rescale(out[col], rule, f"{where}column {col!r}")
        _require(out, self.impute.keys(), where, "impute")
        return out


@dataclass(frozen=True)
class FittedHarmonization:
    """A ``Harmonization`` with its fill values computed on the local training rows.

    ``fills`` are local values (a mode is a category name): they stay on the node.
    """

    harmonization: Harmonization
    fills: Mapping[str, Scalar]
    dataset: str | None = None

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Harmonize ``frame`` (training or holdout rows) with the fitted fill values.

        Parameters
        ----------
        frame
            The department's rows; they are not modified.

        Returns
        -------
        pandas.DataFrame
            A new frame in the federation's shared columns and scales, without missing cells
            in the imputed columns.
        """
        where = _prefix(self.dataset)
        out = self.harmonization.prepare(frame, dataset=self.dataset)
        for col, rule in self.harmonization.impute.items():
            if rule.indicator:
                flag = f"{col}{INDICATOR_SUFFIX}"
                if flag in out.columns:
                    raise DataError(
                        f"{where}indicator column {flag!r} of impute rule {col!r} already exists"
                    )
                out[flag] = out[col].isna().astype("float64")
            out[col] = _fill(out[col], self.fills[col], f"{where}column {col!r}")
        return out


def load_harmonization(path: Path | str) -> Harmonization:
    """Read a harmonization YAML file.

    Parameters
    ----------
    path
        The file; an empty file means "no harmonization".

    Returns
    -------
    Harmonization
        The validated mapping.

    Raises
    ------
    ConfigError
        If the file is missing, is not YAML, or holds unknown or invalid options.
    """
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"harmonization file {str(file)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"harmonization file {str(file)!r} cannot be read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"harmonization file {str(file)!r} is not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"harmonization file {str(file)!r} must hold a mapping, got {type(raw).__name__}"
        )
    try:
        return Harmonization.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"harmonization file {str(file)!r}: {describe_errors(exc)}") from exc


def save_harmonization(mapping: Harmonization, path: Path | str, *, header: str = "") -> Path:
    """Write ``mapping`` as YAML (``header`` lines become ``#`` comments) and return the path."""
    file = Path(path)
    body = yaml.safe_dump(
        mapping.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        allow_unicode=True,
        sort_keys=False,
    )
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    file.write_text(comments + body, encoding="utf-8")
    return file


def _prefix(dataset: str | None) -> str:
    return f"dataset {dataset!r}: " if dataset else "harmonization: "


def _require(frame: pd.DataFrame, columns: Iterable[str], where: str, step: str) -> None:
    names = list(columns)
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise DataError(
            f"{where}{step} names unknown column(s) {missing}; "
            f"available: {[str(c) for c in frame.columns]}"
        )


def _matches(series: pd.Series, markers: tuple[Scalar, ...]) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        numbers = [m for m in markers if isinstance(m, int | float) and not isinstance(m, bool)]
        return series.isin(numbers)
    keys = {category_key(m) for m in markers}
    return series.map(lambda v: not pd.isna(v) and category_key(v) in keys).astype(bool)


def _numbers(series: pd.Series, where: str, purpose: str) -> pd.Series:
    numbers = pd.to_numeric(series, errors="coerce")
    bad = int((numbers.isna() & series.notna()).sum())
    if bad:
        raise DataError(f"{where} holds {bad} non-numeric value(s); {purpose} needs numbers")
    return numbers.astype("float64")


def _rescale(series: pd.Series, rule: ScaleRule, where: str) -> pd.Series:
    values = _numbers(series, where, "a scale rule")
    low, high = rule.from_
    outside = int(((values < low) | (values > high)).sum())
    if outside:
        raise DataError(
            f"{where} holds {outside} value(s) outside the scale's `from` range "
            f"[{low:g}, {high:g}]; fix the data or the range"
        )
    to_low, to_high = rule.to
    return to_low + (values - low) * ((to_high - to_low) / (high - low))


def _fill_value(frame: pd.DataFrame, col: str, rule: ImputeRule, where: str) -> Scalar:
    if rule.strategy is ImputeStrategy.CONSTANT:
        assert rule.value is not None  # checked by ImputeRule
        return rule.value
    series = frame[col]
    if int(series.notna().sum()) == 0:
        raise DataError(
            f"{where}column {col!r} has no value in any of its {len(series)} row(s); "
            f"cannot compute its {rule.strategy}; use strategy `constant`"
        )
    if rule.strategy is ImputeStrategy.MEDIAN:
        return float(_numbers(series, f"{where}column {col!r}", "median imputation").median())
    counts = series.dropna().value_counts(sort=False)
    top = int(counts.max())
    winners = [v for v, n in counts.items() if int(n) == top]
    value = min(winners, key=category_key)  # ties broken deterministically
    return value.item() if hasattr(value, "item") else value  # type: ignore[no-any-return]


def _fill(series: pd.Series, value: Scalar, where: str) -> pd.Series:
    if not bool(series.isna().any()):
        return series
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return series.fillna(float(value))
        if bool(series.notna().any()):
            raise DataError(
                f"{where} is numeric but its fill value is a {type(value).__name__}; give a number"
            )
    if isinstance(series.dtype, pd.StringDtype):
        return series.fillna(category_key(value))
    return series.astype(object).fillna(value)
