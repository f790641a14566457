"""Tests of the torch-free records: TrainData, FitConfig, EvalConfig, results, exports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import clawfed.learning as learning
from clawfed.core import ConfigError, DataError
from clawfed.learning import (
    EvalConfig,
    EvalResult,
    FitConfig,
    FitResult,
    Optimizer,
    TrainData,
)


def _data(n: int = 4, d: int = 2) -> TrainData:
    x = np.arange(n * d, dtype=np.float32).reshape(n, d)
    return TrainData(
        x, np.array([0, 1] * (n // 2), dtype=np.int64), tuple(f"c{j}" for j in range(d))
    )


def test_package_exports_exactly_the_protocol_and_records() -> None:
    assert sorted(learning.__all__) == [
        "EvalConfig",
        "EvalResult",
        "FitConfig",
        "FitResult",
        "Optimizer",
        "SettingValue",
        "TrainData",
        "Trainer",
        "TrainingDiverged",
    ]


def test_coordinator_side_imports_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import clawfed.learning, clawfed.learning.trainer, clawfed.learning.metrics\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_train_data_accepts_valid_arrays() -> None:
    d = _data(6, 3)
    assert (d.num_samples, d.num_features) == (6, 3)
    assert d.feature_names == ("c0", "c1", "c2")


@pytest.mark.parametrize(
    ("x", "y", "names", "message"),
    [
        (np.zeros((2, 2), np.float64), np.zeros(2, np.int64), ("a", "b"), "2-D float32"),
        (np.zeros(2, np.float32), np.zeros(2, np.int64), ("a",), "2-D float32"),
        (np.zeros((2, 2), np.float32), np.zeros(2, np.int32), ("a", "b"), "1-D int64"),
        (np.zeros((0, 2), np.float32), np.zeros(0, np.int64), ("a", "b"), "at least one row"),
        (np.zeros((2, 0), np.float32), np.zeros(2, np.int64), (), "at least one feature"),
        (np.zeros((2, 2), np.float32), np.zeros(3, np.int64), ("a", "b"), "labels have 3"),
        (np.zeros((2, 2), np.float32), np.zeros(2, np.int64), ("a",), "1 feature name"),
        (np.zeros((2, 2), np.float32), np.zeros(2, np.int64), ("a", "a"), "repeated: a"),
        (np.zeros((2, 2), np.float32), np.zeros(2, np.int64), ("a", ""), "non-empty"),
        (np.array([[0, np.nan]], np.float32), np.zeros(1, np.int64), ("a", "b"), "column(s) b"),
        (np.zeros((2, 2), np.float32), np.array([0, -1], np.int64), ("a", "b"), ">= 0, got -1"),
    ],
)
def test_train_data_refuses_bad_input(
    x: np.ndarray, y: np.ndarray, names: tuple[str, ...], message: str
) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainData(x, y, names)


def test_from_arrays_converts_and_copies() -> None:
    x = [[1.0, 2.0], [3.0, 4.0]]
    y = np.array([1.0, 0.0])
    d = TrainData.from_arrays(x, y, ["a", "b"])
    assert d.features.dtype == np.float32 and d.labels.dtype == np.int64
    assert d.labels.tolist() == [1, 0]
    y[0] = 0.0
    assert d.labels.tolist() == [1, 0]


def test_from_arrays_refuses_fractional_labels() -> None:
    with pytest.raises(DataError, match="whole numbers"):
        TrainData.from_arrays([[1.0]], [0.5], ["a"])
    with pytest.raises(DataError, match="must be integers"):
        TrainData.from_arrays([[1.0]], ["yes"], ["a"])


def test_fit_config_defaults_and_coercion() -> None:
    cfg = FitConfig(lr=1, optimizer="adam")  # type: ignore[arg-type]
    assert cfg.optimizer is Optimizer.ADAM
    assert isinstance(cfg.lr, float) and cfg.lr == 1.0
    assert cfg.proximal_mu == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -1}, "lr must be > 0, got -1"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"lr": float("nan")}, "lr must be finite"),
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
        ({"epochs": True}, "epochs must be an integer"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"weight_decay": -0.1}, "weight_decay must be >= 0, got -0.1"),
        ({"proximal_mu": -2}, "proximal_mu must be >= 0, got -2"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam, got 'rmsprop'"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"seed": 2**63}, "seed must be <="),
        ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"momentum": 0.9, "optimizer": "adam"}, "momentum applies to sgd only"),
        ({"lr": "fast"}, "lr must be a number, got 'fast'"),
    ],
)
def test_fit_config_refuses_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FitConfig(**kwargs)  # type: ignore[arg-type]


def test_fit_config_from_settings_refuses_unknown_keys() -> None:
    cfg = FitConfig.from_settings({"epochs": 3, "lr": 0.5, "optimizer": "sgd"})
    assert (cfg.epochs, cfg.lr, cfg.optimizer) == (3, 0.5, Optimizer.SGD)
    with pytest.raises(ConfigError, match="unknown setting\\(s\\) 'epoch'; known settings are"):
        FitConfig.from_settings({"epoch": 3})


def test_eval_config_validation() -> None:
    assert EvalConfig.from_settings({"threshold": 0.3}).threshold == 0.3
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\), got 1"):
        EvalConfig(threshold=1)
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        EvalConfig(batch_size=0)
    with pytest.raises(ConfigError, match="unknown setting"):
        EvalConfig.from_settings({"treshold": 0.3})


def test_results_validate_counts_and_metrics() -> None:
    r = FitResult(3, {"loss": 0.5})
    assert dict(r.metrics) == {"loss": 0.5}
    with pytest.raises(TypeError):
        r.metrics["loss"] = 1.0  # type: ignore[index]
    with pytest.raises(ValueError, match="num_samples must be an integer > 0, got 0"):
        FitResult(0)
    with pytest.raises(ValueError, match="must be finite"):
        EvalResult(2, {"accuracy": float("nan")})
    assert EvalResult(2, {}, ["x"]).notes == ("x",)  # type: ignore[arg-type]


def test_records_are_frozen() -> None:
    d = _data()
    with pytest.raises(AttributeError):
        d.feature_names = ("z",)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        FitConfig().lr = 2.0  # type: ignore[misc]
