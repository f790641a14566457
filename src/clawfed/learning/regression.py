"""Regression models (linear, MLP) and ``TorchRegressionTrainer``: MSE loss, MAE/RMSE metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from clawfed.core import ConfigError, DataError
from clawfed.learning.models import LinearScorer, _check_dropout, _check_hidden, _seeded, mlp
from clawfed.learning.regression_metrics import regression_metrics
from clawfed.learning.torch_loop import TorchModuleTrainer, fit_module, forward_batches
from clawfed.learning.trainer import EvalConfig, EvalResult, FitConfig, FitResult

#: Built-in regression models and the settings each accepts (with defaults).
REGRESSION_MODEL_SETTINGS: Mapping[str, Mapping[str, object]] = {
    "linear_regression": {},
    "mlp_regressor": {"hidden": [32], "dropout": 0.0},
}
#: Names of the built-in regression models.
REGRESSION_MODELS: tuple[str, ...] = tuple(REGRESSION_MODEL_SETTINGS)

_ADVICE = "lower lr or standardize the features; the weights from before fit are kept"


class LinearRegressor(LinearScorer):
    """One linear layer; ``forward`` returns one value per row, shape ``(batch,)``."""


def build_regressor(
    name: str, n_features: int, settings: Mapping[str, object] | None = None, *, seed: int | None
) -> nn.Module:
    """Build the regression model ``name`` (see ``REGRESSION_MODELS``) with its settings.

    Raises
    ------
    ConfigError
        For an unknown model or setting, or a bad setting value.
    """
    defaults = REGRESSION_MODEL_SETTINGS.get(name)
    if defaults is None:
        raise ConfigError(
            f"unknown regression model {name!r}; known: {', '.join(REGRESSION_MODELS)}"
        )
    given = dict(settings or {})
    unknown = sorted(k for k in given if k not in defaults)
    if unknown:
        raise ConfigError(
            f"model {name}: unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"known settings: {', '.join(defaults) or 'none'}"
        )
    merged = {**defaults, **given}
    with _seeded(seed):
        if name == "mlp_regressor":
            hidden = _check_hidden(merged["hidden"])
            return mlp(n_features, hidden, _check_dropout(merged["dropout"]))
        return LinearRegressor(n_features)


@dataclass(frozen=True)
class RegressionData:
    """Rows for a regression model: ``features`` (n × d float32) and ``targets`` (n float32)."""

    features: npt.NDArray[np.float32]
    targets: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        x, y = self.features, self.targets
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
            raise DataError("features must be a 2-D float32 array")
        if not isinstance(y, np.ndarray) or y.dtype != np.float32 or y.ndim != 1:
            raise DataError("targets must be a 1-D float32 array")
        if x.shape[0] != y.shape[0]:
            raise DataError(f"features have {x.shape[0]} rows but targets have {y.shape[0]}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise DataError(f"regression data needs rows and features, got shape {x.shape}")
        if not bool(np.isfinite(x).all()) or not bool(np.isfinite(y).all()):
            raise DataError("features and targets must be finite (impute missing values first)")

    @property
    def num_samples(self) -> int:
        """Number of rows."""
        return int(self.features.shape[0])


class TorchRegressionTrainer(TorchModuleTrainer):
    """Trains an ``nn.Module`` emitting one value per row by mean squared error.

    The FedProx proximal term ``mu / 2 * ||w - w_global||^2`` is added when
    ``FitConfig.proximal_mu`` > 0 (Li et al., MLSys 2020). Deterministic for equal inputs:
    the batch order and in-model randomness draw from ``config.seed``.

    Parameters
    ----------
    module
        The model; trained in place.
    num_threads
        When given, ``torch.set_num_threads`` (process-wide).
    """

    def fit(self, data: RegressionData, config: FitConfig) -> FitResult:
        """Train ``config.epochs`` epochs of shuffled mini-batches; report the last epoch's MSE.

        The weights from before ``fit`` are restored whatever goes wrong.

        Raises
        ------
        TrainingDiverged
            When the loss or the weights become NaN or infinite.
        """
        x, y = torch.tensor(data.features), torch.tensor(data.targets)
        loss = fit_module(self._module, x, y, config, F.mse_loss, advice=_ADVICE).loss
        return FitResult(data.num_samples, {"loss": loss, "mse": loss})

    def predict(self, features: npt.NDArray[np.float32], batch_size: int = 1024) -> np.ndarray:
        """The model's value for each row (float64), without changing the weights."""
        x = torch.tensor(np.ascontiguousarray(features, dtype=np.float32))
        out: np.ndarray = forward_batches(self._module, x, batch_size).to(torch.float64).numpy()
        return out

    def evaluate(self, data: RegressionData, config: EvalConfig) -> EvalResult:
        """MAE, RMSE, MSE, bias and R² (when the targets vary) on ``data``."""
        predictions = self.predict(data.features, config.batch_size)
        return EvalResult(data.num_samples, regression_metrics(predictions, data.targets))
