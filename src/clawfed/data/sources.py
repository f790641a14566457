"""Where a department's table lives (CSV, Parquet, SQL) and how it is read into pandas."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clawfed.core.errors import DataError


class CsvSource(BaseModel):
    """A comma-separated file with a header row; UTF-8 (with or without BOM) unless told."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["csv"] = "csv"
    path: Path
    encoding: str = "utf-8-sig"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None
        return value


class ParquetSource(BaseModel):
    """An Apache Parquet file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["parquet"] = "parquet"
    path: Path


class SqlSource(BaseModel):
    """The result of one query against a database named by an SQLAlchemy URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["sql"] = "sql"
    url: str = Field(min_length=1)
    query: str = Field(min_length=1)

    def safe_url(self) -> str:
        """The URL with any password masked, fit for messages and logs."""
        try:
            return sa.make_url(self.url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return "<unparseable URL>"


#: Any supported source; the ``kind`` field chooses which.
Source = Annotated[CsvSource | ParquetSource | SqlSource, Field(discriminator="kind")]


def read_source(source: CsvSource | ParquetSource | SqlSource, dataset: str) -> pd.DataFrame:
    """Read the whole table behind ``source``.

    Parameters
    ----------
    source
        Where the table lives.
    dataset
        Name of the dataset, used in error messages.

    Returns
    -------
    pandas.DataFrame
        The table as read, with at least one row.

    Raises
    ------
    DataError
        If the file is missing or unreadable, is not in the declared format, the query
        fails, or the table has no rows.
    """
    if isinstance(source, SqlSource):
        frame = _read_sql(source, dataset)
    else:
        frame = _read_file(source, dataset)
    if len(frame) == 0:
        raise DataError(f"dataset {dataset!r} is empty: its {source.kind} source returned 0 rows")
    return frame


def _read_file(source: CsvSource | ParquetSource, dataset: str) -> pd.DataFrame:
    path = source.path
    where = f"dataset {dataset!r}: {source.kind} file {str(path)!r}"
    if not path.exists():
        raise DataError(f"{where} does not exist")
    if not path.is_file():
        raise DataError(f"{where} is not a regular file")
    try:
        if isinstance(source, CsvSource):
            return pd.read_csv(path, encoding=source.encoding)
        return pd.read_parquet(path, engine="pyarrow")
    except PermissionError as exc:
        raise DataError(f"{where} cannot be read: permission denied") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{where} is empty: it has no header row") from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{where} is not valid {exc.encoding} text (byte {exc.start}); save it as UTF-8 "
            "or set the source's `encoding` (e.g. gbk)"
        ) from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{where} is not well-formed CSV: {_first_line(exc)}") from exc
    except pa.ArrowException as exc:
        raise DataError(f"{where} is not a readable Parquet file: {_first_line(exc)}") from exc
    except OSError as exc:
        raise DataError(f"{where} cannot be read: {exc.strerror or _first_line(exc)}") from exc


def _read_sql(source: SqlSource, dataset: str) -> pd.DataFrame:
    where = f"dataset {dataset!r}: SQL source {source.safe_url()}"
    try:
        engine = sa.create_engine(source.url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise DataError(f"{where}: invalid database URL: {_first_line(exc)}") from exc
    except ImportError as exc:
        raise DataError(f"{where}: the database driver is not installed: {exc.name}") from exc
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(source.query), conn)
    except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
        raise DataError(f"{where}: query failed: {_database_reason(exc)}") from exc
    finally:
        engine.dispose()


def _database_reason(exc: BaseException) -> str:
    """The driver's message (``no such table: txns``) without SQLAlchemy's footer or row values."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.exc.DataError):
            # The driver quotes the offending cell here ("invalid input syntax: 'Li Wei'").
            return (
                f"the database rejected a value ({type(seen.orig).__name__}); "
                "details withheld because they may quote row values"
            )
        if isinstance(seen, sa.exc.DBAPIError) and seen.orig is not None:
            return _first_line(seen.orig)
        seen = seen.__cause__
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
