"""Pick the runner a task needs from its model (``noop`` or a learning model); parse ``--data``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, Weights
from clawfed.node.learning_runner import LearningRunner, LocalData
from clawfed.node.runner import EvalAnswer, FitAnswer, NoopRunner, TaskRunner
from clawfed.node.task_setup import MODEL_CUSTOM, MODEL_NAME, MODEL_SETTINGS

__all__ = ["DispatchRunner", "LocalData", "parse_data_args"]

#: The framework-only model, run by ``NoopRunner``.
NOOP = "noop"


def _pairs(items: Sequence[str], flag: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"{flag} expects NAME=PATH, got {item!r}")
        if name in out:
            raise ConfigError(f"{flag} names {name!r} twice")
        out[name] = Path(path)
    return out


def parse_data_args(data: Sequence[str], mapping: Sequence[str]) -> dict[str, LocalData]:
    """Turn ``--data fraud=tx.csv --mapping fraud=map.yaml`` into ``LocalData`` records.

    ``PATH`` of ``--data`` is a CSV or Parquet file, or a dataset spec (YAML) naming its source.
    """
    files = _pairs(data, "--data")
    maps = _pairs(mapping, "--mapping")
    unknown = sorted(set(maps) - set(files))
    if unknown:
        raise ConfigError(f"--mapping for unknown dataset(s) {', '.join(unknown)}")
    for name, path in {**files, **maps}.items():
        if not path.is_file():
            raise ConfigError(f"dataset {name!r}: file {path} does not exist")
    return {n: LocalData(n, p, maps.get(n)) for n, p in files.items()}


def _noop_config(config: Mapping[str, ConfigValue]) -> dict[str, ConfigValue]:
    """The config ``NoopRunner`` reads: each scalar model setting as ``model.<name>``."""
    text = config.get(MODEL_SETTINGS, "{}")
    try:
        settings = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"task config {MODEL_SETTINGS!r} is not valid JSON: {exc}") from exc
    if not isinstance(settings, dict):
        raise ConfigError(f"task config {MODEL_SETTINGS!r} must hold a JSON object, got {text!r}")
    out = dict(config)
    for key, value in settings.items():
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(f"noop model: setting {key!r} must be a scalar, got {value!r}")
        out[f"model.{key}"] = value
    return out


class DispatchRunner:
    """Routes each task to ``NoopRunner`` (model ``noop``) or ``LearningRunner`` (every other).

    Parameters
    ----------
    datasets
        What the node offers, by the name jobs use.
    num_threads
        torch threads for training (see ``LearningRunner``).
    allowed_modules
        Packages a job's ``custom`` model may be imported from; none by default.
    """

    def __init__(
        self,
        datasets: Mapping[str, LocalData],
        *,
        num_threads: int | None = 1,
        allowed_modules: Sequence[str] = (),
    ) -> None:
        self._noop = NoopRunner()
        self._learning = LearningRunner(
            datasets, num_threads=num_threads, allowed_modules=allowed_modules
        )

    def describe(self) -> list[tuple[str, str]]:
        """(name, metadata JSON) of each offered dataset, for the coordinator's Hello.

        A dataset offered as a dataset spec is profiled (schema, rows, missing rates, label
        balance, quality); a bare CSV or Parquet file gets its name, format, size and rows.
        """
        return self._learning.describe()

    def _is_noop(self, config: Mapping[str, ConfigValue]) -> bool:
        name = config.get(MODEL_NAME)
        if name is None and MODEL_CUSTOM not in config:
            raise ConfigError(
                f"task config names no model: it needs {MODEL_NAME!r} or {MODEL_CUSTOM!r}"
            )
        return name == NOOP

    def _runner(
        self, config: Mapping[str, ConfigValue]
    ) -> tuple[TaskRunner, dict[str, ConfigValue]]:
        if self._is_noop(config):
            return self._noop, _noop_config(config)
        return self._learning, dict(config)

    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        """The job model's initial weights."""
        runner, cfg = self._runner(config)
        return runner.init(cfg)

    def stats(self, config: Mapping[str, ConfigValue]) -> Weights:
        """Feature moments ``count``, ``sum``, ``m2`` of the job's training rows (no rows)."""
        if self._is_noop(config):
            raise ConfigError("model noop has no data: a STATS task needs a learning model")
        return self._learning.stats(config)

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        """Train locally from ``weights``; the answer carries the delta."""
        runner, cfg = self._runner(config)
        return runner.fit(cfg, weights)

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        """Evaluate ``weights`` on the local holdout."""
        runner, cfg = self._runner(config)
        return runner.evaluate(cfg, weights)
