"""DatasetSpec validation, encoding into LocalDataset, its errors, and the stratified split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from clawfed.core.errors import ConfigError, DataError
from clawfed.data import (
    ColumnType,
    CsvSource,
    DatasetSpec,
    Harmonization,
    LocalDataset,
    Task,
    encode_frame,
    infer_column_type,
    load_dataset,
    load_spec,
    load_split,
)

CANARY = "CANARY-4711"


def _spec(path: Path, **overrides: Any) -> DatasetSpec:
    base: dict[str, Any] = {
        "name": "loans",
        "source": {"kind": "csv", "path": str(path)},
        "target": "default",
        "features": ["income", "grade", "owner"],
    }
    base.update(overrides)
    return DatasetSpec.model_validate(base)


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "loans.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _loans(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "income": np.round(rng.normal(5000, 1500, rows), 2),
            "grade": rng.choice(["B", "A", "C"], rows),
            "owner": rng.integers(0, 2, rows),
            "default": (np.arange(rows) % 4 == 0).astype(int),
        }
    )


# --- spec validation ----------------------------------------------------------------------


def test_misspelled_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="feature\n.*Extra inputs are not permitted"):
        _spec(tmp_path / "x.csv", feature=["income"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"features": ["income", "income"]}, r"features list \['income'\] more than once"),
        ({"features": ["income", "default"]}, "target 'default' must not also be a feature"),
        ({"types": {"incme": "numeric"}}, r"types names column\(s\) \['incme'\] that are not"),
        ({"categories": {"grade": []}}, "categories of 'grade' must be a non-empty list"),
        (
            {"types": {"income": "numeric"}, "categories": {"income": ["1"]}},
            "categories given for 'income', which types declares numeric",
        ),
        (
            {"types": {"owner": "binary"}, "categories": {"owner": ["n", "y", "u"]}},
            "binary column 'owner' needs exactly 2 categories, got 3",
        ),
        ({"task": "regression", "positive_label": "1"}, "positive_label only applies to task"),
        ({"types": {"income": "ordinal"}}, "Input should be 'numeric', 'categorical' or 'binary'"),
        ({"features": []}, "at least 1 item"),
    ],
)
def test_spec_rules(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _spec(tmp_path / "x.csv", **overrides)


def test_spec_is_frozen(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "x.csv")
    with pytest.raises(ValidationError, match="frozen"):
        spec.target = "income"


def test_load_spec_resolves_relative_paths_and_reports_bad_options(tmp_path: Path) -> None:
    _write(tmp_path, _loans())
    spec_file = tmp_path / "loans.dataset.yaml"
    body = {
        "name": "loans",
        "source": {"kind": "csv", "path": "loans.csv"},
        "target": "default",
        "features": ["income", "grade"],
        "categories": {"grade": ["A", "B", "C", 7]},
    }
    spec_file.write_text(yaml.safe_dump(body), encoding="utf-8")
    spec = load_spec(spec_file)
    assert isinstance(spec.source, CsvSource)
    assert spec.source.path == tmp_path / "loans.csv"
    assert spec.categories["grade"] == ("A", "B", "C", "7")
    assert load_dataset(spec).num_rows == 40
    body["sourc"] = body.pop("source")
    spec_file.write_text(yaml.safe_dump(body), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"loans\.dataset\.yaml': source: Field required"):
        load_spec(spec_file)
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


# --- encoding -----------------------------------------------------------------------------


def test_encoding_layout_and_types(tmp_path: Path) -> None:
    data = _loans()
    ds = load_dataset(_spec(_write(tmp_path, data)))
    assert ds.feature_names == ("income", "grade=A", "grade=B", "grade=C", "owner")
    assert dict(ds.column_types) == {
        "income": ColumnType.NUMERIC,
        "grade": ColumnType.CATEGORICAL,
        "owner": ColumnType.BINARY,
    }
    assert ds.features.dtype == np.float32 and ds.features.shape == (40, 5)
    np.testing.assert_allclose(ds.features[:, 0], data["income"].to_numpy(), rtol=1e-6)
    onehot = ds.features[:, 1:4]
    np.testing.assert_array_equal(onehot.sum(axis=1), np.ones(40))
    expected_a = (data["grade"] == "A").to_numpy().astype(np.float32)
    np.testing.assert_array_equal(onehot[:, 0], expected_a)
    assert ds.labels.dtype == np.int64
    np.testing.assert_array_equal(ds.labels, data["default"].to_numpy())


def test_declared_categories_fix_the_one_hot_layout(tmp_path: Path) -> None:
    data = _loans()
    data.loc[3, "grade"] = None
    spec = _spec(_write(tmp_path, data), categories={"grade": ["C", "B", "A", "D"]})
    ds = load_dataset(spec)
    assert ds.feature_names[1:5] == ("grade=C", "grade=B", "grade=A", "grade=D")
    np.testing.assert_array_equal(ds.features[:, 4], np.zeros(40))  # D never occurs
    np.testing.assert_array_equal(ds.features[3, 1:5], np.zeros(4))  # missing -> no category


def test_declared_categories_imply_categorical(tmp_path: Path) -> None:
    data = _loans()
    data["mcc"] = np.where(np.arange(40) % 2 == 0, 5411, 5812)
    path = _write(tmp_path, data)
    assert load_dataset(_spec(path, features=["mcc"])).feature_names == ("mcc",)
    spec = _spec(path, features=["mcc"], categories={"mcc": [5812, 5411]})
    ds = load_dataset(spec)
    assert ds.feature_names == ("mcc=5812", "mcc=5411")
    np.testing.assert_array_equal(ds.features[:, 1], (np.arange(40) % 2 == 0).astype(np.float32))


def test_value_outside_declared_categories(tmp_path: Path) -> None:
    data = _loans()
    data.loc[[2, 5], "grade"] = CANARY
    spec = _spec(_write(tmp_path, data), categories={"grade": ["A", "B", "C"]})
    with pytest.raises(DataError, match=r"column 'grade' holds 2 value\(s\) outside") as err:
        load_dataset(spec)
    assert CANARY not in str(err.value)


def test_unknown_target_lists_available_columns(tmp_path: Path) -> None:
    spec = _spec(_write(tmp_path, _loans()), target="defualt")
    with pytest.raises(
        DataError,
        match=r"dataset 'loans': target column 'defualt' not found; available: "
        r"\['income', 'grade', 'owner', 'default'\]",
    ):
        load_dataset(spec)


def test_unknown_feature_lists_available_columns(tmp_path: Path) -> None:
    spec = _spec(_write(tmp_path, _loans()), features=["income", "grad"])
    with pytest.raises(
        DataError, match=r"feature column\(s\) \['grad'\] not found; available: \['income'"
    ):
        load_dataset(spec)


def test_binary_task_needs_two_classes(tmp_path: Path) -> None:
    data = _loans()
    data["default"] = np.arange(40) % 3
    path = _write(tmp_path, data)
    with pytest.raises(
        DataError,
        match=r"dataset 'loans': target 'default' has 3 distinct class\(es\); a binary task "
        "needs exactly 2",
    ):
        load_dataset(_spec(path))
    multi = load_dataset(_spec(path, task="multiclass"))
    assert multi.classes == ("0", "1", "2")
    np.testing.assert_array_equal(multi.labels, np.arange(40) % 3)
    data["default"] = 0
    with pytest.raises(DataError, match=r"has 1 distinct class\(es\); a binary task"):
        load_dataset(_spec(_write(tmp_path, data)))


def test_positive_label_chooses_class_one(tmp_path: Path) -> None:
    data = _loans()
    data["default"] = np.where(np.arange(40) % 4 == 0, "yes", "no")
    path = _write(tmp_path, data)
    plain = load_dataset(_spec(path))
    assert plain.classes == ("no", "yes")
    flipped = load_dataset(_spec(path, positive_label="no"))
    assert flipped.classes == ("yes", "no")
    np.testing.assert_array_equal(flipped.labels, 1 - plain.labels)
    with pytest.raises(DataError, match="positive_label 'maybe' does not occur"):
        load_dataset(_spec(path, positive_label="maybe"))


def test_regression_target(tmp_path: Path) -> None:
    data = _loans()
    ds = load_dataset(
        _spec(_write(tmp_path, data), target="income", features=["grade"], task="regression")
    )
    assert ds.labels.dtype == np.float32 and ds.classes == ()
    np.testing.assert_allclose(ds.labels, data["income"].to_numpy(), rtol=1e-6)


def test_non_numeric_values_are_counted_not_quoted(tmp_path: Path) -> None:
    data = _loans().astype({"income": object})
    data.loc[[1, 7], "income"] = CANARY
    path = _write(tmp_path, data)
    spec = _spec(path, types={"income": "numeric"})
    with pytest.raises(
        DataError,
        match=r"dataset 'loans': column 'income' is numeric but holds 2 non-numeric value\(s\) "
        "of 40",
    ) as err:
        load_dataset(spec)
    assert CANARY not in str(err.value)
    # Without a declaration the mostly-numeric column is inferred numeric too.
    with pytest.raises(DataError, match="holds 2 non-numeric"):
        load_dataset(_spec(path))


def test_missing_numeric_value_asks_for_imputation(tmp_path: Path) -> None:
    data = _loans()
    data.loc[4, "income"] = None
    with pytest.raises(
        DataError, match=r"column 'income' has 1 missing value\(s\); add an `impute` rule"
    ):
        load_dataset(_spec(_write(tmp_path, data)))


def test_missing_label(tmp_path: Path) -> None:
    data = _loans().astype({"default": "Int64"})
    data.loc[[0, 9], "default"] = None
    with pytest.raises(DataError, match=r"target 'default' has 2 missing value\(s\)"):
        load_dataset(_spec(_write(tmp_path, data)))


def test_binary_feature_encodings(tmp_path: Path) -> None:
    data = _loans()
    data["owner"] = np.where(data["owner"] == 1, "Y", "n")
    ds = load_dataset(_spec(_write(tmp_path, data), types={"owner": "binary"}))
    np.testing.assert_array_equal(ds.features[:, -1], (data["owner"] == "Y").astype(np.float32))
    data["owner"] = np.where(data["owner"] == "Y", "rents", CANARY)
    path = _write(tmp_path, data)
    with pytest.raises(DataError, match=r"column 'owner' is binary but holds 40 value\(s\)") as err:
        load_dataset(_spec(path, types={"owner": "binary"}))
    assert CANARY not in str(err.value)
    declared = load_dataset(
        _spec(path, types={"owner": "binary"}, categories={"owner": [CANARY, "rents"]})
    )
    np.testing.assert_array_equal(
        declared.features[:, -1], (data["owner"] == "rents").astype(np.float32)
    )


def test_type_inference() -> None:
    assert infer_column_type(pd.Series([0, 1, 1, None])) is ColumnType.BINARY
    assert infer_column_type(pd.Series([True, False])) is ColumnType.BINARY
    assert infer_column_type(pd.Series([0, 2, 5])) is ColumnType.NUMERIC
    assert infer_column_type(pd.Series(["a", "b", "a"])) is ColumnType.CATEGORICAL
    assert infer_column_type(pd.Series(["1.5", "2", "7"])) is ColumnType.NUMERIC
    mostly = pd.Series([str(i) for i in range(19)] + ["oops"])
    assert infer_column_type(mostly) is ColumnType.NUMERIC
    assert infer_column_type(pd.Series([None, None])) is ColumnType.NUMERIC


def test_local_dataset_checks_shapes() -> None:
    with pytest.raises(DataError, match=r"3 label\(s\) for 2 row\(s\)"):
        LocalDataset("d", np.zeros((2, 1), np.float32), np.zeros(3, np.int64), ("a",), Task.BINARY)
    with pytest.raises(DataError, match="float32"):
        LocalDataset("d", np.zeros((2, 1)), np.zeros(2, np.int64), ("a",), Task.BINARY)  # type: ignore[arg-type]


# --- split ------------------------------------------------------------------------------


def test_split_is_stratified_deterministic_and_partitions(tmp_path: Path) -> None:
    data = _loans(rows=200)
    data["row"] = np.arange(200)
    spec = _spec(_write(tmp_path, data), features=["row", "income"])
    ds = load_dataset(spec)
    train, holdout = ds.split(0.2, seed=3)
    assert (train.num_rows, holdout.num_rows) == (160, 40)
    assert int(holdout.labels.sum()) == 10  # 0.2 of the 50 positives
    assert int(train.labels.sum()) == 40
    rows = np.concatenate([train.features[:, 0], holdout.features[:, 0]])
    assert sorted(rows.astype(int).tolist()) == list(range(200))
    _, again = ds.split(0.2, seed=3)
    np.testing.assert_array_equal(again.features, holdout.features)
    _, other = ds.split(0.2, seed=4)
    assert not np.array_equal(other.features[:, 0], holdout.features[:, 0])
    with pytest.raises(ConfigError, match=r"holdout_fraction must be in \(0, 1\), got 1.0"):
        ds.split(1.0, seed=0)


def test_split_keeps_every_class_on_both_sides_and_refuses_tiny_data(tmp_path: Path) -> None:
    data = _loans(rows=12)
    data["default"] = [1, 1] + [0] * 10
    ds = load_dataset(_spec(_write(tmp_path, data)))
    train, holdout = ds.split(0.1, seed=0)
    assert int(train.labels.sum()) == 1 and int(holdout.labels.sum()) == 1
    single = ds.subset(np.array([0], dtype=np.int64))
    with pytest.raises(DataError, match=r"1 row\(s\) are too few to split"):
        single.split(0.5, seed=0)


def test_load_split_fits_imputation_on_training_rows_only(tmp_path: Path) -> None:
    data = _loans(rows=100)
    data["row"] = np.arange(100)
    data.loc[data.index % 10 == 3, "income"] = None
    path = _write(tmp_path, data)
    spec = _spec(path, features=["row", "income", "grade"])
    mapping = Harmonization.model_validate({"impute": {"income": {"strategy": "median"}}})
    train, holdout = load_split(spec, mapping, holdout_fraction=0.3, seed=7)
    whole_train, whole_holdout = load_dataset(spec, mapping).split(0.3, seed=7)
    np.testing.assert_array_equal(train.features[:, 0], whole_train.features[:, 0])
    np.testing.assert_array_equal(holdout.features[:, 0], whole_holdout.features[:, 0])
    assert train.feature_names == holdout.feature_names == whole_train.feature_names
    train_rows = train.features[:, 0].astype(int)
    expected = float(data.loc[train_rows, "income"].median())
    holes = np.isin(holdout.features[:, 0].astype(int), data.index[data["income"].isna()])
    assert holes.any()
    np.testing.assert_allclose(holdout.features[holes, 1], expected, rtol=1e-6)
    assert float(data["income"].median()) != pytest.approx(expected)


def test_encode_frame_respects_given_types(tmp_path: Path) -> None:
    data = _loans()
    spec = _spec(tmp_path / "unused.csv")
    ds = encode_frame(
        data,
        spec,
        types={
            "income": ColumnType.NUMERIC,
            "grade": ColumnType.CATEGORICAL,
            "owner": ColumnType.CATEGORICAL,
        },
    )
    assert ds.feature_names[-2:] == ("owner=0", "owner=1")
