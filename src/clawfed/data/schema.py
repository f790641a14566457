"""Column types of a tabular dataset and how they are inferred from the values."""

from __future__ import annotations

import math
from enum import StrEnum

import pandas as pd

#: A column counts as numeric when at least this share of its non-missing values parse as numbers.
NUMERIC_SHARE = 0.9


class ColumnType(StrEnum):
    """How a column is encoded into features."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BINARY = "binary"


def category_key(value: object) -> str:
    """The text a categorical value is known by: ``5411`` and ``5411.0`` both become ``"5411"``.

    Parameters
    ----------
    value
        One non-missing cell.

    Returns
    -------
    str
        A stable name, identical whether the cell came from CSV, Parquet or SQL.
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item"):  # numpy scalar
        return category_key(value.item())
    return str(value)


def infer_column_type(series: pd.Series) -> ColumnType:
    """Infer the type of one column from its values.

    Booleans and numbers that are all 0 or 1 are ``BINARY``; other numbers are ``NUMERIC``.
    Text columns whose non-missing values parse as numbers in at least ``NUMERIC_SHARE`` of
    the cells are treated as numbers (so a few typos are reported instead of silently turning
    amounts into categories); every other text column is ``CATEGORICAL``. A column with no
    value at all is ``NUMERIC``.

    Parameters
    ----------
    series
        The column.

    Returns
    -------
    ColumnType
        The inferred type.
    """
    present = series.dropna()
    if len(present) == 0:
        return ColumnType.NUMERIC
    if pd.api.types.is_bool_dtype(present):
        return ColumnType.BINARY
    if pd.api.types.is_numeric_dtype(present):
        return ColumnType.BINARY if bool(present.isin([0, 1]).all()) else ColumnType.NUMERIC
    if all(isinstance(v, bool) for v in present):
        return ColumnType.BINARY
    parsed = pd.to_numeric(present, errors="coerce")
    share = float(parsed.notna().mean())
    if share < NUMERIC_SHARE:
        return ColumnType.CATEGORICAL
    if share == 1.0 and bool(parsed.isin([0, 1]).all()):
        return ColumnType.BINARY
    return ColumnType.NUMERIC
