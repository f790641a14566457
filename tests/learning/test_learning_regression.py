"""Regression models, the MSE trainer and MAE / RMSE metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clawfed.core import ConfigError, DataError
from clawfed.learning import EvalConfig, FitConfig, TrainingDiverged
from clawfed.learning.models import MODEL_NAMES
from clawfed.learning.regression import (
    REGRESSION_MODELS,
    RegressionData,
    TorchRegressionTrainer,
    build_regressor,
)
from clawfed.learning.regression_metrics import mae, regression_metrics, rmse


def _line(n: int = 400, seed: int = 0) -> RegressionData:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = (3.0 * x[:, 0] - 2.0 * x[:, 1] + 5.0 + rng.normal(0, 0.1, n)).astype(np.float32)
    return RegressionData(x, y)


def test_metrics_match_their_definitions() -> None:
    p, y = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 2.0])
    assert mae(p, y) == pytest.approx(1.0)
    assert rmse(p, y) == pytest.approx(math.sqrt(5 / 3))
    m = regression_metrics(p, y)
    assert m["bias"] == pytest.approx(1 / 3) and m["mse"] == pytest.approx(5 / 3)
    assert m["r2"] == pytest.approx(1 - 5 / 2)
    assert "r2" not in regression_metrics([1.0, 2.0], [3.0, 3.0])  # constant targets
    with pytest.raises(DataError, match="2 prediction"):
        mae([1.0, 2.0], [1.0])


@pytest.mark.parametrize("name", REGRESSION_MODELS)
def test_models_learn_a_linear_rule(name: str) -> None:
    data = _line()
    trainer = TorchRegressionTrainer(build_regressor(name, 2, seed=1))
    before = trainer.evaluate(data, EvalConfig()).metrics["mae"]
    fit = trainer.fit(data, FitConfig(epochs=8, lr=0.05, batch_size=16, seed=3))
    after = trainer.evaluate(data, EvalConfig()).metrics
    assert fit.num_samples == 400 and fit.metrics["loss"] == fit.metrics["mse"]
    assert after["mae"] < 0.5 < before and after["r2"] > 0.95


def test_training_is_deterministic_and_diverging_keeps_old_weights() -> None:
    data = _line()
    runs = []
    for _ in range(2):
        trainer = TorchRegressionTrainer(build_regressor("linear_regression", 2, seed=4))
        trainer.fit(data, FitConfig(epochs=2, lr=0.05, seed=9))
        runs.append(trainer.get_weights())
    for name in runs[0].keys():
        assert np.array_equal(runs[0][name], runs[1][name])
    trainer = TorchRegressionTrainer(build_regressor("linear_regression", 2, seed=4))
    old = trainer.get_weights()
    huge = RegressionData(data.features * 1e18, data.targets)
    with pytest.raises(TrainingDiverged):
        trainer.fit(huge, FitConfig(epochs=3, lr=10.0, seed=1))
    for name in old.keys():
        assert np.array_equal(old[name], trainer.get_weights()[name])


def test_bad_models_and_data_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown regression model 'ridge'"):
        build_regressor("ridge", 2, seed=0)
    with pytest.raises(ConfigError, match="unknown setting\\(s\\) 'depth'"):
        build_regressor("mlp_regressor", 2, {"depth": 3}, seed=0)
    with pytest.raises(DataError, match="finite"):
        RegressionData(np.full((2, 1), np.nan, dtype=np.float32), np.zeros(2, dtype=np.float32))
    assert not set(REGRESSION_MODELS) & set(MODEL_NAMES)
