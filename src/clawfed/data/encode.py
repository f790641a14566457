"""Turn harmonized columns into a float32 feature matrix and a label vector.

Messages name the dataset, the column and how many cells are wrong, never a cell's value:
values may be personal data and errors travel to logs and chat.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import pandas as pd

from clawfed.core.errors import DataError
from clawfed.data.schema import ColumnType, category_key, infer_column_type

FloatMatrix = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64] | npt.NDArray[np.float32]

_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n"})
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class Task(StrEnum):
    """What the target is: two classes, several classes, or a number."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


def resolve_types(
    frame: pd.DataFrame, columns: Sequence[str], declared: Mapping[str, ColumnType]
) -> dict[str, ColumnType]:
    """The declared type of each column, or the inferred one where none is declared."""
    return {c: declared.get(c) or infer_column_type(frame[c]) for c in columns}


def resolve_categories(
    frame: pd.DataFrame,
    types: Mapping[str, ColumnType],
    declared: Mapping[str, Sequence[str]],
) -> dict[str, tuple[str, ...]]:
    """The category list of each categorical column: declared, else the sorted values present."""
    out: dict[str, tuple[str, ...]] = {}
    for col, kind in types.items():
        if kind is not ColumnType.CATEGORICAL:
            continue
        given = declared.get(col)
        if given is not None:
            out[col] = tuple(given)
        else:
            out[col] = tuple(sorted({category_key(v) for v in frame[col].dropna()}))
    return out


def encode_features(
    frame: pd.DataFrame,
    types: Mapping[str, ColumnType],
    categories: Mapping[str, Sequence[str]],
    dataset: str,
) -> tuple[FloatMatrix, tuple[str, ...]]:
    """Encode the columns of ``types`` (in its order) into a float32 matrix.

    Numeric and binary columns give one feature each; a categorical column gives one 0/1
    feature per category, named ``col=category`` (a missing cell sets none of them).

    Parameters
    ----------
    frame
        Harmonized rows.
    types
        Column -> type, in feature order.
    categories
        Categorical column -> its categories, in order (see ``resolve_categories``).
    dataset
        Name used in error messages.

    Returns
    -------
    tuple
        The ``(rows, features)`` float32 matrix and the feature names.
    """
    blocks: list[npt.NDArray[np.float32]] = []
    names: list[str] = []
    for col, kind in types.items():
        where = f"dataset {dataset!r}: column {col!r}"
        series = frame[col]
        if kind is ColumnType.NUMERIC:
            blocks.append(_numeric(series, where)[:, None])
            names.append(col)
        elif kind is ColumnType.BINARY:
            blocks.append(_binary(series, categories.get(col), where)[:, None])
            names.append(col)
        else:
            cats = tuple(categories[col])
            blocks.append(_one_hot(series, cats, where))
            names.extend(f"{col}={c}" for c in cats)
    if not blocks:
        return np.zeros((len(frame), 0), dtype=np.float32), ()
    return np.ascontiguousarray(np.hstack(blocks), dtype=np.float32), tuple(names)


def encode_labels(
    series: pd.Series, task: Task, positive_label: str | None, dataset: str
) -> tuple[Labels, tuple[str, ...]]:
    """Encode the target column.

    Parameters
    ----------
    series
        The target column.
    task
        Binary and multiclass targets become int64 class indices; regression targets float32.
    positive_label
        For a binary task, the class encoded as 1 (default: the second class in sorted order).
    dataset
        Name used in error messages.

    Returns
    -------
    tuple
        The labels and the class names in index order (empty for regression).
    """
    where = f"dataset {dataset!r}: target {series.name!r}"
    missing = int(series.isna().sum())
    if missing:
        raise DataError(f"{where} has {missing} missing value(s); every row needs a label")
    if task is Task.REGRESSION:
        return _numeric(series, where), ()
    keys = series.map(category_key)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        order = sorted(set(series.tolist()))
        classes = list(dict.fromkeys(category_key(v) for v in order))
    else:
        classes = sorted(set(keys))
    if task is Task.BINARY:
        if len(classes) != 2:
            raise DataError(
                f"{where} has {len(classes)} distinct class(es); a binary task needs exactly 2"
            )
        if positive_label is not None:
            if positive_label not in classes:
                raise DataError(
                    f"{where}: positive_label {positive_label!r} does not occur in the target"
                )
            classes = [c for c in classes if c != positive_label] + [positive_label]
    elif len(classes) < 2:
        raise DataError(f"{where} has {len(classes)} distinct class(es); need at least 2")
    index = {c: i for i, c in enumerate(classes)}
    labels = keys.map(index).to_numpy(dtype=np.int64)
    return labels, tuple(classes)


def _numeric(series: pd.Series, where: str) -> npt.NDArray[np.float32]:
    numbers = pd.to_numeric(series, errors="coerce")
    bad = int((numbers.isna() & series.notna()).sum())
    if bad:
        raise DataError(
            f"{where} is numeric but holds {bad} non-numeric value(s) of {len(series)}; "
            "correct them, or declare the column categorical under `types`"
        )
    values: npt.NDArray[np.float64] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = int(np.isnan(values).sum())
    if missing:
        raise DataError(
            f"{where} has {missing} missing value(s); add an `impute` rule for it to the "
            "department's harmonization file"
        )
    huge = int((~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)).sum())
    if huge:
        raise DataError(f"{where} holds {huge} infinite or out-of-float32-range value(s)")
    return values.astype(np.float32)


def _binary(
    series: pd.Series, declared: Sequence[str] | None, where: str
) -> npt.NDArray[np.float32]:
    missing = int(series.isna().sum())
    if missing:
        raise DataError(
            f"{where} has {missing} missing value(s); add an `impute` rule for it to the "
            "department's harmonization file"
        )
    keys = series.map(category_key)
    if declared is not None:
        mapping = {declared[0]: 0.0, declared[1]: 1.0}
        rule = f"its two declared categories {list(declared)}"
    else:
        mapping = dict.fromkeys(_TRUE, 1.0) | dict.fromkeys(_FALSE, 0.0)
        rule = "0/1, true/false or yes/no (list its two categories under `categories`)"
    coded = keys.map(lambda k: mapping.get(k.lower() if declared is None else k))
    bad = int(coded.isna().sum())
    if bad:
        raise DataError(f"{where} is binary but holds {bad} value(s) that are not {rule}")
    out: npt.NDArray[np.float32] = coded.to_numpy(dtype=np.float32)
    return out


def _one_hot(series: pd.Series, categories: tuple[str, ...], where: str) -> npt.NDArray[np.float32]:
    index = {c: i for i, c in enumerate(categories)}
    present = series.notna().to_numpy()
    codes = series.map(lambda v: -1 if pd.isna(v) else index.get(category_key(v), -2))
    codes_arr = codes.to_numpy(dtype=np.int64)
    unknown = int((codes_arr == -2).sum())
    if unknown:
        raise DataError(
            f"{where} holds {unknown} value(s) outside its {len(categories)} declared "
            "categories; add them to `categories` in the dataset spec"
        )
    out = np.zeros((len(series), len(categories)), dtype=np.float32)
    rows = np.flatnonzero(present)
    out[rows, codes_arr[rows]] = 1.0
    return out
