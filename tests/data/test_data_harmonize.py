"""Harmonization: renames, missing-value markers, scale maps, imputation, and the YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from clawfed.core.errors import ConfigError, DataError
from clawfed.data import Harmonization, ScaleRule, load_harmonization, save_harmonization

CANARY = "CANARY-4711"


def _h(body: dict[str, Any]) -> Harmonization:
    return Harmonization.model_validate(body)


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "risk_score": [1, 10, 4, None, 7],
            "acct_age": [100.0, None, 300.0, 400.0, None],
            "mcc": ["travel", None, "grocery", "travel", "grocery"],
            "disputes": [0, -1, 2, -1, 1],
        }
    )


def test_renames_and_input_is_not_mutated() -> None:
    frame = _frame()
    before = frame.copy(deep=True)
    out = _h({"renames": {"risk_score": "risk_rating", "mcc": "merchant"}}).apply(frame)
    assert list(out.columns) == ["risk_rating", "acct_age", "merchant", "disputes"]
    pd.testing.assert_frame_equal(frame, before)
    assert out is not frame


def test_rename_errors() -> None:
    with pytest.raises(
        DataError,
        match=r"dataset 'd': renames names unknown column\(s\) \['riskscore'\]; "
        r"available: \['risk_score', 'acct_age', 'mcc', 'disputes'\]",
    ):
        _h({"renames": {"riskscore": "risk"}}).apply(_frame(), dataset="d")
    with pytest.raises(DataError, match=r"renames would overwrite existing column\(s\) \['mcc'\]"):
        _h({"renames": {"risk_score": "mcc"}}).apply(_frame())
    swapped = _h({"renames": {"risk_score": "mcc", "mcc": "risk_score"}}).apply(_frame())
    assert swapped["mcc"].tolist()[:3] == [1, 10, 4]
    with pytest.raises(ValidationError, match="renames map both 'a' and 'b' onto 'c'"):
        _h({"renames": {"a": "c", "b": "c"}})


def test_scale_maps_ratings_linearly() -> None:
    out = _h({"scales": {"risk_score": {"from": [1, 10], "to": [0, 1]}}}).apply(_frame())
    expected = [0.0, 1.0, 3 / 9, np.nan, 6 / 9]
    np.testing.assert_allclose(out["risk_score"].to_numpy(dtype=float), expected)
    five = pd.DataFrame({"r": [1, 2, 3, 4, 5]})
    mapped = _h({"scales": {"r": {"from": [1, 5], "to": [0, 1]}}}).apply(five)
    assert mapped["r"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    reversed_ = _h({"scales": {"r": {"from": [1, 5], "to": [1, 0]}}}).apply(five)
    assert reversed_["r"].tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_scale_out_of_range_counts_values() -> None:
    frame = pd.DataFrame({"risk": [1, 5, 7, 9, 3]})
    rule = _h({"scales": {"risk": {"from": [1, 5], "to": [0, 1]}}})
    with pytest.raises(
        DataError,
        match=r"dataset 'd': column 'risk' holds 2 value\(s\) outside the scale's `from` "
        r"range \[1, 5\]",
    ) as err:
        rule.apply(frame, dataset="d")
    assert "7" not in str(err.value) and "9" not in str(err.value)


def test_scale_of_text_column() -> None:
    frame = pd.DataFrame({"risk": ["1", CANARY, "3"]})
    with pytest.raises(DataError, match=r"column 'risk' holds 1 non-numeric value\(s\)") as err:
        _h({"scales": {"risk": {"from": [1, 5], "to": [0, 1]}}}).apply(frame)
    assert CANARY not in str(err.value)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"from": [5, 1], "to": [0, 1]}, r"low < high, got \[5.0, 1.0\]"),
        ({"from": [1, 5], "to": [1, 1]}, r"`to` must span a range, got \[1.0, 1.0\]"),
        ({"from": [1, "inf"], "to": [0, 1]}, "finite numbers"),
        ({"form": [1, 5], "to": [0, 1]}, "Extra inputs are not permitted"),
    ],
)
def test_scale_rule_validation(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScaleRule.model_validate(rule)


@given(
    low=st.floats(-1e3, 1e3),
    width=st.floats(1e-2, 1e3),
    share=st.floats(0.0, 1.0),
)
def test_scale_maps_range_ends_onto_target_ends(low: float, width: float, share: float) -> None:
    high = low + width
    inside = min(low + share * width, high)
    frame = pd.DataFrame({"x": [low, high, inside]})
    out = _h({"scales": {"x": {"from": [low, high], "to": [-1, 1]}}}).apply(frame)["x"].tolist()
    assert out[0] == pytest.approx(-1.0, abs=1e-9)
    assert out[1] == pytest.approx(1.0, abs=1e-9)
    assert -1.0 - 1e-9 <= out[2] <= 1.0 + 1e-9


def test_missing_value_markers() -> None:
    out = _h({"missing_values": {"disputes": [-1]}}).apply(_frame())
    assert out["disputes"].isna().tolist() == [False, True, False, True, False]
    text = pd.DataFrame({"grade": ["A", "unknown", "B"]})
    marked = _h({"missing_values": {"grade": ["unknown"]}}).apply(text)
    assert marked["grade"].isna().tolist() == [False, True, False]


def test_impute_median_mode_constant_and_indicator() -> None:
    mapping = _h(
        {
            "missing_values": {"disputes": [-1]},
            "impute": {
                "acct_age": {"strategy": "median", "indicator": True},
                "mcc": {"strategy": "mode"},
                "disputes": {"strategy": "constant", "value": 0, "indicator": True},
            },
        }
    )
    frame = _frame()
    out = mapping.apply(frame)
    assert out["acct_age"].tolist() == [100.0, 300.0, 300.0, 400.0, 300.0]
    assert out["acct_age__missing"].tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert out["mcc"].tolist() == ["travel", "grocery", "grocery", "travel", "grocery"]
    assert "mcc__missing" not in out.columns
    assert out["disputes"].tolist() == [0.0, 0.0, 2.0, 0.0, 1.0]
    assert out["disputes__missing"].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert frame["acct_age"].isna().sum() == 2  # input untouched


def test_fitted_statistics_come_from_the_fitting_rows() -> None:
    mapping = _h({"impute": {"x": {"strategy": "median"}}})
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, None]})
    holdout = pd.DataFrame({"x": [None, 100.0, 200.0]})
    fitted = mapping.fit(train)
    assert dict(fitted.fills) == {"x": 2.0}
    assert fitted.apply(holdout)["x"].tolist() == [2.0, 100.0, 200.0]
    assert mapping.apply(holdout)["x"].tolist() == [150.0, 100.0, 200.0]


def test_impute_errors() -> None:
    empty = pd.DataFrame({"x": [None, None], "y": ["a", "b"]}, dtype=object)
    with pytest.raises(DataError, match=r"column 'x' has no value in any of its 2 row\(s\)"):
        _h({"impute": {"x": {"strategy": "median"}}}).apply(empty)
    filled = _h({"impute": {"x": {"strategy": "constant", "value": "none"}}}).apply(empty)
    assert filled["x"].tolist() == ["none", "none"]
    text = pd.DataFrame({"x": ["1", CANARY, None]})
    with pytest.raises(DataError, match=r"holds 1 non-numeric value\(s\); median imputation"):
        _h({"impute": {"x": {"strategy": "median"}}}).apply(text)
    clash = pd.DataFrame({"x": [1.0, None], "x__missing": [0, 0]})
    with pytest.raises(DataError, match="indicator column 'x__missing' of impute rule 'x' already"):
        _h({"impute": {"x": {"strategy": "median", "indicator": True}}}).apply(clash)
    numbers = pd.DataFrame({"x": [1.0, None]})
    with pytest.raises(DataError, match="column 'x' is numeric but its fill value is a str"):
        _h({"impute": {"x": {"strategy": "constant", "value": "zero"}}}).apply(numbers)
    with pytest.raises(DataError, match=r"impute names unknown column\(s\) \['z'\]"):
        _h({"impute": {"z": {"strategy": "mode"}}}).apply(numbers)


def test_mode_ties_are_broken_deterministically() -> None:
    frame = pd.DataFrame({"c": ["b", "a", "b", "a", None]})
    reordered = pd.DataFrame({"c": ["a", "b", "a", "b", None]})
    rule = _h({"impute": {"c": {"strategy": "mode"}}})
    assert rule.apply(frame)["c"].iloc[-1] == "a"
    assert rule.apply(reordered)["c"].iloc[-1] == "a"


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"strategy": "constant"}, "strategy `constant` needs a `value`"),
        ({"strategy": "median", "value": 3}, "strategy `median` computes its value"),
        ({"strategy": "mean"}, "Input should be 'median', 'mode' or 'constant'"),
        ({"strategy": "mode", "indicater": True}, "Extra inputs are not permitted"),
    ],
)
def test_impute_rule_validation(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _h({"impute": {"x": rule}})


def test_yaml_round_trip(tmp_path: Path) -> None:
    mapping = _h(
        {
            "renames": {"risk_score": "risk_rating"},
            "missing_values": {"disputes": [-1, "n/a"]},
            "scales": {"risk_rating": {"from": [1, 10], "to": [0, 1]}},
            "impute": {"risk_rating": {"strategy": "median", "indicator": True}},
        }
    )
    path = save_harmonization(mapping, tmp_path / "h.yaml", header="合规部 mapping")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# 合规部 mapping\n")
    assert "from:" in text
    assert load_harmonization(path) == mapping


def test_load_harmonization_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"harmonization file '.*nope\.yaml' does not exist"):
        load_harmonization(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("renames: {a: b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_harmonization(bad)
    bad.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a mapping, got list"):
        load_harmonization(bad)
    bad.write_text("rename:\n  a: b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="rename: Extra inputs are not permitted"):
        load_harmonization(bad)
    bad.write_text("scales:\n  r: {from: [5, 1], to: [0, 1]}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"scales\.r: Value error, scale `from` must be"):
        load_harmonization(bad)
    bad.write_text("", encoding="utf-8")
    assert load_harmonization(bad) == Harmonization()
