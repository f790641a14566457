"""What a node tells the coordinator about a dataset it offers: a profile or file facts, no rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from clawfed.core import ClawfedError, DataError
from clawfed.data import CsvSource, DatasetSpec, Harmonization, ParquetSource, SqlSource, profile
from clawfed.data.harmonize import INDICATOR_SUFFIX
from clawfed.data.sources import read_source

_CSV_CHUNK_ROWS = 100_000


def dataset_metadata(
    path: Path,
    source: CsvSource | ParquetSource | SqlSource,
    declared: DatasetSpec | None,
    harmonization: Harmonization | None,
) -> dict[str, Any]:
    """Metadata of one offered dataset, safe to send in Hello.

    With a dataset spec (``declared``) the node knows the target and features, so the answer
    is the quality profile (``data.profile``: schema, row count, missing rates, label
    balance; no cell value and no category name), computed on the harmonized rows before
    imputation. Without one it is the file's name, format, size and row count. Reading or
    profiling errors are reported under ``error`` (their messages never quote cell values).

    Parameters
    ----------
    path
        The file the node was started with (data file or dataset spec).
    source
        Where the rows are.
    declared
        The dataset spec, when ``path`` is one.
    harmonization
        The department's mapping, if any.

    Returns
    -------
    dict
        JSON-serializable metadata.
    """
    out: dict[str, Any] = {"file": path.name, "format": source.kind}
    if not isinstance(source, SqlSource):
        try:
            out["bytes"] = source.path.stat().st_size
        except OSError as exc:
            out["error"] = f"cannot stat {source.path.name}: {exc.strerror}"
            return out
    try:
        if declared is not None:
            out["profile"] = _profile(declared, harmonization)
        else:
            out["rows"] = count_rows(source)
    except ClawfedError as exc:
        out["error"] = str(exc)
    return out


def _profile(spec: DatasetSpec, harmonization: Harmonization | None) -> dict[str, Any]:
    raw = read_source(spec.source, spec.name)
    mapping = harmonization if harmonization is not None else Harmonization()
    frame = mapping.prepare(raw, dataset=spec.name)
    for col, rule in mapping.impute.items():
        if rule.indicator:  # the indicator columns imputation would add, as features expect
            frame[f"{col}{INDICATOR_SUFFIX}"] = frame[col].isna().astype("float64")
    return profile(frame, spec).to_dict()


def count_rows(source: CsvSource | ParquetSource | SqlSource) -> int:
    """Rows of a table without holding it in memory (Parquet: from the file's footer).

    Raises
    ------
    DataError
        When the file cannot be read.
    """
    where = f"{source.kind} source"
    try:
        if isinstance(source, ParquetSource):
            return int(pq.ParquetFile(source.path).metadata.num_rows)
        if isinstance(source, CsvSource):
            where = f"csv file {source.path.name!r}"
            chunks = pd.read_csv(
                source.path, encoding=source.encoding, usecols=[0], chunksize=_CSV_CHUNK_ROWS
            )
            with chunks as reader:
                return sum(len(chunk) for chunk in reader)
        return len(read_source(source, "offered dataset"))
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{where} cannot be read: {type(exc).__name__}") from exc
