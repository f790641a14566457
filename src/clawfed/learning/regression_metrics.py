"""Regression metrics: mean absolute error, root mean squared error, bias and R²."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from clawfed.core import DataError

#: Names of the metrics :func:`regression_metrics` reports (lower is better except ``r2``).
REGRESSION_METRICS: tuple[str, ...] = ("mae", "rmse", "mse", "bias", "r2")


def _pair(
    predictions: npt.ArrayLike, targets: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    p = np.asarray(predictions, dtype=np.float64).reshape(-1)
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise DataError(f"{p.shape[0]} prediction(s) for {y.shape[0]} target(s)")
    if p.size == 0:
        raise DataError("regression metrics need at least one row, got 0")
    if not bool(np.isfinite(p).all()) or not bool(np.isfinite(y).all()):
        raise DataError("predictions and targets must be finite (NaN or Inf found)")
    return p, y


def mae(predictions: npt.ArrayLike, targets: npt.ArrayLike) -> float:
    """Mean absolute error ``mean(|p - y|)``."""
    p, y = _pair(predictions, targets)
    return float(np.mean(np.abs(p - y)))


def rmse(predictions: npt.ArrayLike, targets: npt.ArrayLike) -> float:
    """Root mean squared error ``sqrt(mean((p - y)^2))``."""
    p, y = _pair(predictions, targets)
    return math.sqrt(float(np.mean((p - y) ** 2)))


def regression_metrics(predictions: npt.ArrayLike, targets: npt.ArrayLike) -> dict[str, float]:
    """MAE, RMSE, MSE, bias (mean of ``p - y``: > 0 over-forecasts) and R².

    R² is left out when the targets do not vary (it is undefined then).

    Raises
    ------
    DataError
        When the arrays differ in length, are empty or hold NaN / Inf.
    """
    p, y = _pair(predictions, targets)
    err = p - y
    mse = float(np.mean(err**2))
    out = {
        "mae": float(np.mean(np.abs(err))),
        "rmse": math.sqrt(mse),
        "mse": mse,
        "bias": float(np.mean(err)),
    }
    spread = float(np.sum((y - y.mean()) ** 2))
    if spread > 0.0:
        out["r2"] = 1.0 - float(np.sum(err**2)) / spread
    return out
