"""DP-SGD as a job asks for it in the task config: σ (given or calibrated), fit, ε so far.

The coordinator sends ``dpsgd.*`` keys (``DPSGDKey``) with each fit; the node trains with
Opacus (``dpsgd.DPSGDTabularTrainer``, Abadi et al., CCS 2016) and reports ``dpsgd_epsilon``,
the sample-level ε its data has spent over the job's rounds so far. Every round runs
``epochs · ceil(N / batch_size)`` Poisson-sampled steps with rate ``batch_size / N``, which is
what both the calibration and the ε account compose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, Weights
from clawfed.learning.trainer import FitConfig, FitResult, TrainData
from clawfed.privacy.secagg_wire import DPSGDKey

if TYPE_CHECKING:  # Opacus and dp_accounting (SciPy) load only when a job asks for DP-SGD
    from torch import nn

    from clawfed.privacy.dpsgd import DPSGDSettings


@dataclass(frozen=True)
class DPSGDRequest:
    """The ``dpsgd.*`` settings of one fit task."""

    max_grad_norm: float
    noise_multiplier: float | None
    target_epsilon: float | None
    delta: float
    rounds: int

    def steps(self, num_samples: int, fit: FitConfig) -> tuple[float, int]:
        """Sampling rate and steps of one round on ``num_samples`` rows."""
        q = min(1.0, fit.batch_size / num_samples)
        return q, fit.epochs * math.ceil(num_samples / fit.batch_size)

    def settings(self, num_samples: int, fit: FitConfig) -> DPSGDSettings:
        """σ as given, or the smallest one whose ``rounds`` rounds stay within the target."""
        from clawfed.privacy.accountant import calibrate_noise
        from clawfed.privacy.dpsgd import DPSGDSettings

        sigma = self.noise_multiplier
        if sigma is None:
            assert self.target_epsilon is not None
            q, steps = self.steps(num_samples, fit)
            sigma = calibrate_noise(self.target_epsilon, self.delta, steps * self.rounds, q)
        return DPSGDSettings(sigma, self.max_grad_norm, self.delta)


def _number(config: Mapping[str, ConfigValue], key: DPSGDKey) -> float | None:
    value = config.get(key.value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"task config {key.value!r} must be a finite number, got {value!r}")
    return float(value)


def dpsgd_request(config: Mapping[str, ConfigValue]) -> DPSGDRequest | None:
    """The DP-SGD settings a task carries, or None when the job does not ask for DP-SGD.

    Raises
    ------
    ConfigError
        If ``dpsgd.max_grad_norm`` is present without σ or a target, or a value is malformed.
    """
    clip = _number(config, DPSGDKey.MAX_GRAD_NORM)
    if clip is None:
        return None
    sigma = _number(config, DPSGDKey.NOISE_MULTIPLIER)
    target = _number(config, DPSGDKey.TARGET_EPSILON)
    if (sigma is None) == (target is None):
        raise ConfigError(
            f"a DP-SGD task needs exactly one of {DPSGDKey.NOISE_MULTIPLIER.value!r} or "
            f"{DPSGDKey.TARGET_EPSILON.value!r}, got {sigma!r} and {target!r}"
        )
    rounds = config.get(DPSGDKey.ROUNDS.value, 1)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(
            f"task config {DPSGDKey.ROUNDS.value!r} must be an int >= 1, got {rounds!r}"
        )
    delta = _number(config, DPSGDKey.DELTA)
    return DPSGDRequest(clip, sigma, target, 1e-5 if delta is None else delta, rounds)


def fit_private(
    module: nn.Module,
    weights: Weights,
    data: TrainData,
    fit: FitConfig,
    request: DPSGDRequest,
    round_no: int,
) -> tuple[Weights, FitResult]:
    """Train ``module`` from ``weights`` with DP-SGD; the new weights and the fit result.

    The result's ``dpsgd_epsilon`` is the ε spent by rounds 1…``round_no`` of the job.
    """
    from clawfed.privacy.accountant import epsilon_of_steps
    from clawfed.privacy.dpsgd import DPSGDTabularTrainer

    settings = request.settings(data.num_samples, fit)
    trainer = DPSGDTabularTrainer(module, settings)
    trainer.set_weights(weights)
    result = trainer.fit(data, fit)
    q, steps = request.steps(data.num_samples, fit)
    spent = epsilon_of_steps(
        [(settings.noise_multiplier, q, steps * max(round_no, 1))], request.delta
    )
    metrics = {"loss": result.metrics["loss"], "dpsgd_epsilon": spent}
    return trainer.get_weights(), FitResult(result.num_samples, metrics)
