"""The synthetic retail sales-forecast scenario: shape, determinism, the dates and the groups."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clawfed.chat.nlu import parse_intent
from clawfed.core import ConfigError
from clawfed.data.retail import (
    PRODUCTS,
    REGIONS,
    RETAIL_DEPARTMENTS,
    RETAIL_FEATURES,
    RETAIL_LAST_MONTH,
    RETAIL_MONTHS,
    RETAIL_REFERENCE_DATE,
    TARGET,
    make_retail_scenario,
    retail_frame,
    retail_rows_per_month,
    shared_sales,
)


def test_three_departments_write_one_csv_each(tmp_path: Path) -> None:
    files = make_retail_scenario(3, tmp_path)
    assert set(files) == set(RETAIL_DEPARTMENTS) == {"sales", "logistics", "marketing"}
    assert set(RETAIL_DEPARTMENTS.values()) == {"销售部", "物流部", "市场部"}
    for dept, path in files.items():
        frame = pd.read_csv(path, dtype={"month": str})
        assert list(frame.columns) == ["month", "region", *RETAIL_FEATURES[1:], TARGET]
        per_month = sum(retail_rows_per_month(dept).values())
        assert len(frame) == per_month * len(RETAIL_MONTHS)
        assert set(frame["region"]) <= set(REGIONS) and set(frame["product"]) <= set(PRODUCTS)
        assert (frame[TARGET] >= 0).all() and frame[TARGET].dtype.kind == "f"


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a, b = retail_frame(7, "sales"), retail_frame(7, "sales")
    pd.testing.assert_frame_equal(a, b)
    assert not retail_frame(8, "sales")[TARGET].equals(a[TARGET])


def test_last_month_is_relative_to_the_reference_date() -> None:
    assert RETAIL_MONTHS[-1] == RETAIL_LAST_MONTH == "2026-10"
    assert len(RETAIL_MONTHS) == 12 and RETAIL_MONTHS[0] == "2025-11"
    parsed = parse_intent("对比下华东和华南区域上月销量预测偏差", today=RETAIL_REFERENCE_DATE)
    assert parsed.slots.time_range is not None
    start = parsed.slots.time_range.start
    assert f"{start.year}-{start.month:02d}" == RETAIL_LAST_MONTH


def test_some_groups_fall_below_the_default_k_last_month() -> None:
    frame = retail_frame(1, "marketing")
    last = frame[frame["month"] == RETAIL_LAST_MONTH].groupby("region").size().to_dict()
    assert last == {"华东": 20, "华南": 6, "华北": 9, "西南": 12}
    sales = retail_frame(1, "sales")
    assert (sales[sales["month"] == RETAIL_LAST_MONTH]["region"] == "西南").sum() == 10


def test_each_department_is_biased_its_own_way_against_the_shared_rule() -> None:
    offsets = {}
    for dept in RETAIL_DEPARTMENTS:
        frame = retail_frame(2, dept)
        offsets[dept] = float((frame[TARGET] - shared_sales(frame)).mean())
    assert offsets["marketing"] > offsets["sales"] > offsets["logistics"]
    assert offsets["marketing"] - offsets["logistics"] > 150


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown retail department 'hr'"):
        retail_frame(1, "hr")
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got -1"):
        make_retail_scenario(-1, tmp_path)
