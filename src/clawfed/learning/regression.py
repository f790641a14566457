"""Regression models (linear, MLP) and ``TorchRegressionTrainer``: MSE loss, MAE/RMSE metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from clawfed.core import ConfigError, DataError, Weights
from clawfed.learning.convert import load_weights, weights_from_module
from clawfed.learning.models import _check_dropout, _check_hidden, _check_n_features, _seeded, mlp
from clawfed.learning.regression_metrics import regression_metrics
from clawfed.learning.torch_trainer import _forward, _optimizer, _sq_dist
from clawfed.learning.trainer import EvalConfig, EvalResult, FitConfig, FitResult, TrainingDiverged

#: Built-in regression models and the settings each accepts (with defaults).
REGRESSION_MODEL_SETTINGS: Mapping[str, Mapping[str, object]] = {
    "linear_regression": {},
    "mlp_regressor": {"hidden": [32], "dropout": 0.0},
}
#: Names of the built-in regression models.
REGRESSION_MODELS: tuple[str, ...] = tuple(REGRESSION_MODEL_SETTINGS)


class LinearRegressor(nn.Module):
    """One linear layer; ``forward`` returns one value per row, shape ``(batch,)``."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(_check_n_features(n_features), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out.squeeze(-1)


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


class TorchRegressionTrainer:
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

    def __init__(self, module: nn.Module, *, num_threads: int | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise ConfigError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if num_threads is not None:
            if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
                raise ConfigError(f"num_threads must be an integer >= 1, got {num_threads!r}")
            torch.set_num_threads(num_threads)
        self._module = module

    def get_weights(self) -> Weights:
        """A snapshot of the module's weights."""
        return weights_from_module(self._module)

    def set_weights(self, weights: Weights) -> None:
        """Load ``weights`` into the module (names, shapes and finiteness checked)."""
        load_weights(self._module, weights)

    def fit(self, data: RegressionData, config: FitConfig) -> FitResult:
        """Train ``config.epochs`` epochs of shuffled mini-batches; report the last epoch's MSE.

        The weights from before ``fit`` are restored whatever goes wrong.

        Raises
        ------
        TrainingDiverged
            When the loss or the weights become NaN or infinite.
        """
        module = self._module
        params = [p for p in module.parameters() if p.requires_grad]
        if not params:
            raise ConfigError(f"model {type(module).__name__} has no trainable parameter")
        x, y = torch.tensor(data.features), torch.tensor(data.targets)
        before = {k: v.detach().clone() for k, v in module.state_dict().items()}
        anchor = [p.detach().clone() for p in params]
        try:
            loss = _train(module, params, anchor, x, y, config)
            if not all(bool(torch.isfinite(p).all()) for p in params):
                raise TrainingDiverged(
                    f"training diverged: weights became NaN or Inf (lr {config.lr}); lower lr "
                    "or standardize the features",
                    epoch=config.epochs,
                    batch=-(-data.num_samples // config.batch_size),
                )
        except BaseException:
            module.load_state_dict(before)
            raise
        return FitResult(data.num_samples, {"loss": loss, "mse": loss})

    def predict(self, features: npt.NDArray[np.float32], batch_size: int = 1024) -> np.ndarray:
        """The model's value for each row (float64), without changing the weights."""
        module = self._module
        module.eval()
        x = torch.tensor(np.ascontiguousarray(features, dtype=np.float32))
        chunks: list[torch.Tensor] = []
        with torch.no_grad():
            for start in range(0, int(x.shape[0]), batch_size):
                chunks.append(_forward(module, x[start : start + batch_size]))
        if not chunks:
            return np.zeros(0, dtype=np.float64)
        out: np.ndarray = torch.cat(chunks).to(torch.float64).numpy()
        return out

    def evaluate(self, data: RegressionData, config: EvalConfig) -> EvalResult:
        """MAE, RMSE, MSE, bias and R² (when the targets vary) on ``data``."""
        predictions = self.predict(data.features, config.batch_size)
        return EvalResult(data.num_samples, regression_metrics(predictions, data.targets))


def _train(
    module: nn.Module,
    params: list[nn.Parameter],
    anchor: list[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    config: FitConfig,
) -> float:
    mu = config.proximal_mu
    opt = _optimizer(params, config)
    n, bs = int(x.shape[0]), config.batch_size
    epoch_loss = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        order = torch.Generator().manual_seed(config.seed)
        module.train()
        for epoch in range(1, config.epochs + 1):
            perm = torch.randperm(n, generator=order)
            epoch_loss = 0.0
            for batch, start in enumerate(range(0, n, bs), start=1):
                idx = perm[start : start + bs]
                data_loss = F.mse_loss(_forward(module, x[idx]), y[idx])
                loss = (data_loss + 0.5 * mu * _sq_dist(params, anchor)) if mu else data_loss
                if not bool(torch.isfinite(loss)):
                    raise TrainingDiverged(
                        f"training diverged: loss is {float(loss.detach())} at epoch {epoch}, "
                        f"batch {batch} (lr {config.lr}); lower lr or standardize the features",
                        epoch=epoch,
                        batch=batch,
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                epoch_loss += float(data_loss.detach()) * int(idx.shape[0])
    return epoch_loss / n
