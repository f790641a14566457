"""The dataset profile: its numbers, its quality formula, and that it carries no row values."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clawfed.core.errors import DataError
from clawfed.data import ColumnType, DatasetProfile, DatasetSpec, profile

CANARY = "CANARY-4711"


def _spec(**overrides: Any) -> DatasetSpec:
    base: dict[str, Any] = {
        "name": "cards",
        "source": {"kind": "csv", "path": "unused.csv"},
        "target": "fraud",
        "features": ["amount", "merchant", "foreign", "country"],
    }
    base.update(overrides)
    return DatasetSpec.model_validate(base)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_name": ["王伟", CANARY, "李娜", "张敏", "刘洋", "陈静", "杨磊", "赵军"],
            "amount": [10.0, 20.0, None, 40.0, 50.0, 60.0, 70.0, 80.0],
            "merchant": ["travel", CANARY, "grocery", None, "travel", "travel", "jewelry", "x"],
            "foreign": [0, 1, 0, 0, 1, 0, 0, 1],
            "country": ["CN"] * 8,
            "fraud": [0, 1, 0, 0, 1, 0, 0, 0],
        }
    )


def test_profile_holds_no_row_values() -> None:
    frame = _frame()
    frame.loc[6, "amount"] = 4711.0
    result = profile(frame, _spec())
    text = json.dumps(result.to_dict(), ensure_ascii=False)
    assert CANARY not in text
    assert "4711" not in text
    for value in ("travel", "grocery", "jewelry", "王伟", "CN"):
        assert value not in text


def test_profile_numbers() -> None:
    result = profile(_frame(), _spec())
    assert result.dataset == "cards"
    assert result.rows == 8
    assert dict(result.schema) == {
        "fraud": ColumnType.BINARY,
        "amount": ColumnType.NUMERIC,
        "merchant": ColumnType.CATEGORICAL,
        "foreign": ColumnType.BINARY,
        "country": ColumnType.CATEGORICAL,
    }
    assert "customer_name" not in result.schema
    assert dict(result.missing_rate) == {
        "fraud": 0.0,
        "amount": 0.125,
        "merchant": 0.125,
        "foreign": 0.0,
        "country": 0.0,
    }
    assert dict(result.label_balance) == {"0": 0.75, "1": 0.25}


def test_quality_formula() -> None:
    quality = profile(_frame(), _spec()).quality
    completeness = 1 - 2 / 40
    balance = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    constant = 1 / 4  # country
    assert quality.completeness == pytest.approx(completeness)
    assert quality.label_balance == pytest.approx(balance)
    assert quality.duplicate_rate == 0.0
    assert quality.constant_fraction == pytest.approx(constant)
    expected = 0.4 * completeness + 0.2 * balance + 0.2 * 1.0 + 0.2 * (1 - constant)
    assert quality.score == pytest.approx(expected)


def test_duplicates_and_perfect_data() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 1.0, 3.0], "b": ["x", "y", "x", "z"], "y": [0, 1, 0, 1]})
    spec = _spec(features=["a", "b"], target="y")
    quality = profile(frame, spec).quality
    assert quality.duplicate_rate == 0.25
    clean = profile(frame.drop(index=2), spec).quality
    assert clean.duplicate_rate == 0.0
    assert clean.completeness == 1.0
    assert clean.score == pytest.approx(0.4 + 0.2 * clean.label_balance + 0.2 + 0.2)


def test_single_class_and_regression_balance() -> None:
    frame = _frame()
    frame["fraud"] = 0
    assert profile(frame, _spec()).quality.label_balance == 0.0
    frame["fraud"] = np.linspace(0, 1, 8)
    regression = profile(frame, _spec(task="regression"))
    assert regression.quality.label_balance == 1.0
    assert dict(regression.label_balance) == {}


def test_round_trip_and_validation() -> None:
    original = profile(_frame(), _spec())
    data = json.loads(json.dumps(original.to_dict()))
    again = DatasetProfile.from_dict(data)
    assert again.to_dict() == original.to_dict()
    data["missing_rate"]["amount"] = 1.5
    with pytest.raises(DataError, match=r"missing_rate\['amount'\] must be in \[0, 1\], got 1.5"):
        DatasetProfile.from_dict(data)
    del data["quality"]
    with pytest.raises(DataError, match="malformed profile record"):
        DatasetProfile.from_dict(data)


def test_profile_errors() -> None:
    with pytest.raises(DataError, match=r"feature column\(s\) \['shop'\] not found"):
        profile(_frame(), _spec(features=["amount", "shop"]))
    with pytest.raises(DataError, match="dataset 'cards' is empty"):
        profile(_frame().iloc[0:0], _spec())
