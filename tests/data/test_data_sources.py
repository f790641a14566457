"""Reading CSV, Parquet and SQL sources, and the errors each kind of bad source gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError

from clawfed.core.errors import DataError
from clawfed.data import (
    CsvSource,
    DatasetSpec,
    ParquetSource,
    Source,
    SqlSource,
    load_dataset,
    read_source,
)
from clawfed.data.sources import _database_reason

CANARY = "CANARY-4711"


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [12.5, 300.0, 45.25, 8.0, 990.0, 61.0],
            "merchant": ["travel", "grocery", "travel", "jewelry", "grocery", "travel"],
            "foreign": [0, 1, 0, 0, 1, 1],
            "name": ["Li", "Wang", "Zhang", "Liu", "Chen", "Yang"],
            "fraud": [0, 1, 0, 0, 1, 0],
        }
    )


def _write_sqlite(frame: pd.DataFrame, path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    try:
        frame.to_sql("txns", engine, index=False)
    finally:
        engine.dispose()
    return url


def _spec(source: CsvSource | ParquetSource | SqlSource) -> DatasetSpec:
    return DatasetSpec(
        name="txns",
        source=source,
        target="fraud",
        features=("amount", "merchant", "foreign"),
    )


def test_csv_parquet_and_sqlite_give_the_same_dataset(tmp_path: Path) -> None:
    frame = _frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    url = _write_sqlite(frame, tmp_path / "t.db")
    sources: list[CsvSource | ParquetSource | SqlSource] = [
        CsvSource(path=tmp_path / "t.csv"),
        ParquetSource(path=tmp_path / "t.parquet"),
        SqlSource(url=url, query="SELECT * FROM txns"),
    ]
    loaded = [load_dataset(_spec(s)) for s in sources]
    first = loaded[0]
    assert first.feature_names == (
        "amount",
        "merchant=grocery",
        "merchant=jewelry",
        "merchant=travel",
        "foreign",
    )
    assert first.features.dtype == np.float32
    np.testing.assert_array_equal(first.labels, [0, 1, 0, 0, 1, 0])
    for other in loaded[1:]:
        assert other.feature_names == first.feature_names
        assert other.classes == first.classes == ("0", "1")
        np.testing.assert_array_equal(other.features, first.features)
        np.testing.assert_array_equal(other.labels, first.labels)


def test_sql_query_selects_rows(tmp_path: Path) -> None:
    url = _write_sqlite(_frame(), tmp_path / "t.db")
    frame = read_source(SqlSource(url=url, query="SELECT amount FROM txns WHERE fraud = 1"), "d")
    assert frame["amount"].tolist() == [300.0, 990.0]


def test_source_kind_is_a_discriminated_union() -> None:
    adapter: TypeAdapter[CsvSource | ParquetSource | SqlSource] = TypeAdapter(Source)
    assert isinstance(
        adapter.validate_python({"kind": "parquet", "path": "x.parquet"}), ParquetSource
    )
    with pytest.raises(ValidationError, match="union_tag_invalid"):
        adapter.validate_python({"kind": "excel", "path": "x.xlsx"})
    with pytest.raises(ValidationError, match="extra_forbidden"):
        adapter.validate_python({"kind": "csv", "path": "x.csv", "sep": ";"})


def test_missing_file_names_dataset_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=r"dataset 'sales': csv file '.*nope\.csv' does not exist"):
        read_source(CsvSource(path=missing), "sales")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a regular file"):
        read_source(ParquetSource(path=tmp_path), "d")


def test_malformed_csv(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text('a,b\n1,2\n"never closed,3\n', encoding="utf-8")
    with pytest.raises(DataError, match="dataset 'd': csv file .* is not well-formed CSV"):
        read_source(CsvSource(path=bad), "d")


def test_csv_that_is_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "gbk.csv"
    bad.write_bytes("姓名,金额\n王伟,1\n".encode("gbk"))
    with pytest.raises(DataError, match=r"is not valid utf-8 text \(byte 0\)"):
        read_source(CsvSource(path=bad), "d")
    frame = read_source(CsvSource(path=bad, encoding="gbk"), "d")
    assert frame.columns.tolist() == ["姓名", "金额"]
    with pytest.raises(ValidationError, match="unknown text encoding 'klingon'"):
        CsvSource(path=bad, encoding="klingon")


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    excel = tmp_path / "excel.csv"
    excel.write_bytes("amount,fraud\n1,0\n".encode("utf-8-sig"))
    assert read_source(CsvSource(path=excel), "d").columns.tolist() == ["amount", "fraud"]


def test_csv_without_header_and_csv_without_rows(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="is empty: it has no header row"):
        read_source(CsvSource(path=empty), "d")
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="dataset 'd' is empty: its csv source returned 0 rows"):
        read_source(CsvSource(path=header_only), "d")


def test_text_file_posing_as_parquet(tmp_path: Path) -> None:
    fake = tmp_path / "fake.parquet"
    fake.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError, match="is not a readable Parquet file"):
        read_source(ParquetSource(path=fake), "d")


def test_sql_error_names_the_reason(tmp_path: Path) -> None:
    url = _write_sqlite(_frame(), tmp_path / "t.db")
    with pytest.raises(
        DataError, match="dataset 'd': SQL source .*query failed: no such table: nope"
    ):
        read_source(SqlSource(url=url, query="SELECT * FROM nope"), "d")
    with pytest.raises(DataError, match="query failed: .*syntax error"):
        read_source(SqlSource(url=url, query="SELEC amount FROM txns"), "d")


def test_sql_empty_result(tmp_path: Path) -> None:
    url = _write_sqlite(_frame(), tmp_path / "t.db")
    query = "SELECT * FROM txns WHERE amount < 0"
    with pytest.raises(DataError, match="dataset 'd' is empty: its sql source returned 0 rows"):
        read_source(SqlSource(url=url, query=query), "d")


def test_sql_url_errors_hide_the_password() -> None:
    with pytest.raises(DataError, match="invalid database URL") as bad_url:
        read_source(SqlSource(url="nonsense://x", query="SELECT 1"), "d")
    assert "nonsense" in str(bad_url.value)
    with pytest.raises(DataError, match="driver is not installed") as no_driver:
        read_source(
            SqlSource(url="mysql+mysqldb://alice:s3cret@127.0.0.1:1/db", query="SELECT 1"), "d"
        )
    assert "s3cret" not in str(no_driver.value)
    assert "alice:***@127.0.0.1" in str(no_driver.value)


def test_database_value_errors_do_not_quote_values() -> None:
    driver = ValueError(f"invalid input syntax for type integer: '{CANARY}'")
    wrapped = sa.exc.DataError("SELECT CAST(name AS INT) FROM t", {}, driver)
    reason = _database_reason(wrapped)
    assert CANARY not in reason
    assert "details withheld" in reason
    schema_error = sa.exc.OperationalError("SELECT x FROM t", {}, ValueError("no such column: x"))
    assert _database_reason(schema_error) == "no such column: x"
