"""What a node does with a task: the ``TaskRunner`` protocol and the framework-only runner."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, Metrics, Weights


@dataclass(frozen=True)
class FitAnswer:
    """A node's fit result: samples used, metrics, and delta = new local − global."""

    num_samples: int
    metrics: Metrics
    delta: Weights


@dataclass(frozen=True)
class EvalAnswer:
    """A node's evaluation of the global weights on its local holdout."""

    num_samples: int
    metrics: Metrics


class TaskRunner(Protocol):
    """Runs tasks on the node's own data; raises ``ClawfedError`` for a task it cannot do."""

    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        """Build the job's model and return its initial weights."""
        ...

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        """Train locally from ``weights``; return the delta."""
        ...

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        """Evaluate ``weights`` locally."""
        ...

    def stats(self, config: Mapping[str, ConfigValue]) -> Weights:
        """Aggregate statistics of the local training features (count, sum, m2), never rows."""
        ...


def _int_setting(config: Mapping[str, ConfigValue], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def _seconds_setting(config: Mapping[str, ConfigValue], key: str) -> float:
    value = config.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number of seconds >= 0, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{key} must be a number of seconds >= 0, got {value!r}")
    return seconds


class NoopRunner:
    """A model of ``model.params`` float32 zeros whose training changes nothing.

    Used by the round-overhead benchmark and tests to measure the framework alone: the
    delta is a full-size payload, so every byte still crosses the wire. ``model.sleep_s``
    (seconds >= 0, default 0) simulates local training time: ``fit`` waits that long
    before answering, which is how benchmarks and tests model slow or hanging nodes.
    """

    def __init__(self, num_samples: int = 1) -> None:
        if num_samples < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}")
        self._num_samples = num_samples

    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        params = _int_setting(config, "model.params", 10_000)
        return Weights({"w": np.zeros(params, dtype=np.float32)})

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        sleep_s = _seconds_setting(config, "model.sleep_s")
        if sleep_s > 0:
            time.sleep(sleep_s)
        # np.zeros, not zeros_like: calloc'ed pages are not written, so never faulted in
        delta = Weights((n, np.zeros(a.shape, dtype=a.dtype)) for n, a in weights.items())
        return FitAnswer(self._num_samples, {}, delta)

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        del config, weights
        return EvalAnswer(self._num_samples, {})

    def stats(self, config: Mapping[str, ConfigValue]) -> Weights:
        del config
        raise ConfigError("model noop has no data, so it has no statistics to send")
