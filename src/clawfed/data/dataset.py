"""A dataset's declaration (``DatasetSpec``), its loading, and the encoded ``LocalDataset``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from clawfed.core.errors import ConfigError, DataError
from clawfed.core.validation import describe_errors
from clawfed.data.encode import (
    FloatMatrix,
    Labels,
    Task,
    encode_features,
    encode_labels,
    resolve_categories,
    resolve_types,
)
from clawfed.data.harmonize import Harmonization
from clawfed.data.schema import ColumnType, category_key
from clawfed.data.sources import CsvSource, ParquetSource, Source, read_source

ColumnName = Annotated[str, Field(min_length=1)]
#: Picks the rows a node may use from a raw frame (the node's consent filter).
RowFilter = Callable[[pd.DataFrame], pd.DataFrame]
CategoryName = Annotated[str, BeforeValidator(category_key), Field(min_length=1)]


class DatasetSpec(BaseModel):
    """What a department offers for a job: where the table is and which columns to use.

    Column names are the federation's shared names, i.e. after the department's
    harmonization renames. ``types`` overrides type inference per feature; ``categories``
    fixes the category list (and so the one-hot layout) of a categorical feature, or the
    ``[negative, positive]`` pair of a binary text feature; a feature with ``categories``
    and no declared type is categorical. Give ``categories`` for every categorical feature
    of a federated job so that every department encodes the same columns. ``task`` defaults
    to ``binary``: the target must then hold exactly two classes.

    ``consent_column`` names a column saying per row whether its subject consents; the node
    drops rows without consent before anything else (``privacy.consent``). ``text_column``
    names a free-text column (for text models); with ``redact: true`` the node replaces the
    personal data in it by placeholders (``privacy.pii.redact``) before the text is used.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ColumnName
    source: Source
    target: ColumnName
    features: tuple[ColumnName, ...] = Field(min_length=1)
    types: dict[ColumnName, ColumnType] = Field(default_factory=dict)
    categories: dict[ColumnName, tuple[CategoryName, ...]] = Field(default_factory=dict)
    task: Task = Task.BINARY
    positive_label: Annotated[str, BeforeValidator(category_key)] | None = None
    consent_column: ColumnName | None = None
    text_column: ColumnName | None = None
    redact: bool = False

    @model_validator(mode="after")
    def _check_columns(self) -> Self:
        if self.consent_column is not None and self.consent_column in (
            self.target,
            *self.features,
        ):
            raise ValueError(
                f"consent_column {self.consent_column!r} must not be the target or a feature"
            )
        if self.redact and self.text_column is None:
            raise ValueError("redact: true needs a text_column (the column to redact)")
        doubled = sorted({f for f in self.features if self.features.count(f) > 1})
        if doubled:
            raise ValueError(f"features list {doubled} more than once")
        if self.target in self.features:
            raise ValueError(f"target {self.target!r} must not also be a feature")
        for option in ("types", "categories"):
            stray = sorted(set(getattr(self, option)) - set(self.features))
            if stray:
                raise ValueError(f"{option} names column(s) {stray} that are not features")
        for col, cats in self.categories.items():
            kind = self.types.get(col)
            if kind is ColumnType.NUMERIC:
                raise ValueError(f"categories given for {col!r}, which types declares numeric")
            if len(set(cats)) != len(cats) or not cats:
                raise ValueError(f"categories of {col!r} must be a non-empty list without repeats")
            if kind is ColumnType.BINARY and len(cats) != 2:
                raise ValueError(
                    f"binary column {col!r} needs exactly 2 categories, got {len(cats)}"
                )
        if self.positive_label is not None and self.task is not Task.BINARY:
            raise ValueError(f"positive_label only applies to task binary, not {self.task}")
        return self

    def declared_types(self) -> dict[str, ColumnType]:
        """``types``, plus ``categorical`` for a feature given ``categories`` but no type."""
        implied = dict.fromkeys(self.categories, ColumnType.CATEGORICAL)
        return implied | dict(self.types)


@dataclass(frozen=True, eq=False)
class LocalDataset:
    """Encoded rows of one dataset, kept on the node.

    ``features`` is ``(rows, features)`` float32; ``labels`` are int64 class indices into
    ``classes`` (binary and multiclass) or float32 values (regression). Categorical feature
    names hold category names (``merchant=travel``): keep them on the node unless the spec
    declared the categories.
    """

    name: str
    features: FloatMatrix
    labels: Labels
    feature_names: tuple[str, ...]
    task: Task
    classes: tuple[str, ...] = ()
    column_types: Mapping[str, ColumnType] = field(default_factory=lambda: MappingProxyType({}))
    excluded_no_consent: int = 0

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.dtype != np.float32:
            raise DataError(
                f"dataset {self.name!r}: features must be a 2-D float32 matrix, "
                f"got {self.features.ndim}-D {self.features.dtype}"
            )
        if self.labels.shape != (self.features.shape[0],):
            raise DataError(
                f"dataset {self.name!r}: {self.labels.shape[0]} label(s) for "
                f"{self.features.shape[0]} row(s)"
            )
        if len(self.feature_names) != self.features.shape[1]:
            raise DataError(
                f"dataset {self.name!r}: {len(self.feature_names)} feature name(s) for "
                f"{self.features.shape[1]} feature column(s)"
            )
        object.__setattr__(self, "column_types", MappingProxyType(dict(self.column_types)))

    @property
    def num_rows(self) -> int:
        """Number of rows."""
        return int(self.features.shape[0])

    @property
    def num_features(self) -> int:
        """Number of encoded feature columns."""
        return int(self.features.shape[1])

    def subset(self, rows: npt.NDArray[np.int64]) -> LocalDataset:
        """A new dataset holding the given row indices, in that order."""
        return LocalDataset(
            name=self.name,
            features=self.features[rows],
            labels=self.labels[rows],
            feature_names=self.feature_names,
            task=self.task,
            classes=self.classes,
            column_types=self.column_types,
            excluded_no_consent=self.excluded_no_consent,
        )

    def split(self, holdout_fraction: float, seed: int) -> tuple[LocalDataset, LocalDataset]:
        """Split into ``(train, holdout)``, stratified by class for classification tasks.

        Parameters
        ----------
        holdout_fraction
            Share of rows (of each class) held out, strictly between 0 and 1.
        seed
            Seed of the shuffle; the same seed gives the same split.

        Returns
        -------
        tuple
            The training rows and the holdout rows, each in their original order.
        """
        train, holdout = holdout_indices(self.labels, self.task, holdout_fraction, seed, self.name)
        return self.subset(train), self.subset(holdout)


def holdout_indices(
    labels: Labels, task: Task, holdout_fraction: float, seed: int, dataset: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row indices ``(train, holdout)`` of a stratified split (plain random for regression).

    Each class with at least two rows puts ``round(fraction * rows)`` of them, but at least one
    and at most all but one, into the holdout; a class with one row stays in training.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(len(labels))] if task is Task.REGRESSION else _class_groups(labels)
    held: list[npt.NDArray[np.int64]] = []
    for rows in groups:
        if len(rows) < 2:
            continue
        k = min(max(round(holdout_fraction * len(rows)), 1), len(rows) - 1)
        held.append(rng.permutation(rows)[:k])
    hold = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[hold] = False
    train = np.flatnonzero(mask).astype(np.int64)
    if len(hold) == 0 or len(train) == 0:
        raise DataError(f"dataset {dataset!r}: {len(labels)} row(s) are too few to split")
    return train, hold.astype(np.int64)


def _class_groups(labels: Labels) -> list[npt.NDArray[np.int64]]:
    return [np.flatnonzero(labels == c).astype(np.int64) for c in np.unique(labels)]


def load_spec(path: Path | str) -> DatasetSpec:
    """Read a dataset spec from YAML; relative source file paths are taken from the file's folder.

    Raises
    ------
    ConfigError
        If the file is missing, not YAML, or holds unknown or invalid options.
    """
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"dataset spec {str(file)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"dataset spec {str(file)!r} cannot be read: {exc}") from exc
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"dataset spec {str(file)!r}: {describe_errors(exc)}") from exc
    source = spec.source
    if isinstance(source, CsvSource | ParquetSource) and not source.path.is_absolute():
        moved = source.model_copy(update={"path": file.parent / source.path})
        spec = spec.model_copy(update={"source": moved})
    return spec


def read_frame(spec: DatasetSpec, mapping: Harmonization | None = None) -> pd.DataFrame:
    """The dataset's rows as a pandas frame, harmonized when ``mapping`` is given.

    Raises
    ------
    DataError
        If the source cannot be read, is empty, or lacks the target or a feature column.
    """
    frame = read_source(spec.source, spec.name)
    if mapping is not None:
        frame = mapping.apply(frame, dataset=spec.name)
    check_columns(frame, spec)
    return frame


def check_columns(frame: pd.DataFrame, spec: DatasetSpec) -> None:
    """Raise ``DataError`` naming the target or features missing from ``frame``."""
    available = [str(c) for c in frame.columns]
    if spec.target not in frame.columns:
        raise DataError(
            f"dataset {spec.name!r}: target column {spec.target!r} not found; "
            f"available: {available}"
        )
    missing = [f for f in spec.features if f not in frame.columns]
    if missing:
        raise DataError(
            f"dataset {spec.name!r}: feature column(s) {missing} not found; available: {available}"
        )


def load_dataset(spec: DatasetSpec, mapping: Harmonization | None = None) -> LocalDataset:
    """Read, harmonize and encode a dataset.

    Imputation statistics are computed on all rows read; use ``load_split`` to compute them
    on the training rows only.

    Parameters
    ----------
    spec
        The dataset's declaration.
    mapping
        The department's harmonization, if any.

    Returns
    -------
    LocalDataset
        The encoded rows.
    """
    frame = read_frame(spec, mapping)
    return encode_frame(frame, spec)


def encode_frame(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    *,
    types: Mapping[str, ColumnType] | None = None,
    categories: Mapping[str, tuple[str, ...]] | None = None,
) -> LocalDataset:
    """Encode an already harmonized frame; ``types`` / ``categories`` default to the spec's."""
    check_columns(frame, spec)
    kinds = (
        dict(types)
        if types is not None
        else resolve_types(frame, spec.features, spec.declared_types())
    )
    cats = (
        dict(categories)
        if categories is not None
        else spec.categories | resolve_categories(frame, kinds, spec.categories)
    )
    features, names = encode_features(frame, kinds, cats, spec.name)
    labels, classes = encode_labels(frame[spec.target], spec.task, spec.positive_label, spec.name)
    return LocalDataset(spec.name, features, labels, names, spec.task, classes, kinds)


def load_split(
    spec: DatasetSpec,
    mapping: Harmonization | None = None,
    *,
    holdout_fraction: float,
    seed: int,
    rows: RowFilter | None = None,
) -> tuple[LocalDataset, LocalDataset]:
    """Read a dataset and split it, fitting imputation on the training rows only.

    The rows land on the same side as with ``load_dataset(spec, mapping).split(...)``;
    only the fill values differ (here they never see holdout rows). ``rows`` (e.g. the
    node's consent filter) picks the rows to use first; the datasets returned carry how
    many it left out as ``excluded_no_consent``.

    Returns
    -------
    tuple
        ``(train, holdout)`` with identical feature columns.
    """
    raw = read_source(spec.source, spec.name)
    excluded = 0
    if rows is not None:
        kept = rows(raw)
        excluded = len(raw) - len(kept)
        raw = kept
    harmonization = mapping if mapping is not None else Harmonization()
    prepared = harmonization.prepare(raw, dataset=spec.name)
    if spec.target not in prepared.columns:
        check_columns(prepared, spec)
    labels, _ = encode_labels(prepared[spec.target], spec.task, spec.positive_label, spec.name)
    train_rows, hold_rows = holdout_indices(labels, spec.task, holdout_fraction, seed, spec.name)
    fitted = harmonization.fit(raw.iloc[train_rows], dataset=spec.name)
    full = replace(encode_frame(fitted.apply(raw), spec), excluded_no_consent=excluded)
    return full.subset(train_rows), full.subset(hold_rows)
