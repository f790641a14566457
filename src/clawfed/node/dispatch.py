"""Pick the runner a task needs from its model (``noop`` or a learning model); parse ``--data``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, Weights
from clawfed.node.learning_runner import LearningRunner, LocalData
from clawfed.node.local_policy import LocalPolicy, PolicyRefusal, check_task
from clawfed.node.query import QueryAnswer, RegressionQuery
from clawfed.node.regression_runner import RegressionRunner, is_regression
from clawfed.node.runner import EvalAnswer, FitAnswer, NoopRunner, TaskRunner
from clawfed.node.secure_tasks import SecureAnswer, SecureTasks
from clawfed.node.task_setup import MODEL_CUSTOM, MODEL_NAME, MODEL_SETTINGS
from clawfed.node.text_runner import TextRunner, is_text
from clawfed.privacy.secagg_wire import SecureStep

__all__ = ["DispatchRunner", "LocalData", "parse_data_args"]

log = logging.getLogger("clawfed.node.dispatch")

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
    """Routes each task to ``NoopRunner`` (model ``noop``), ``RegressionRunner`` (regression
    models), ``TextRunner`` (``text_classifier``) or ``LearningRunner`` (every other); QUERY
    tasks go to ``node.query``.

    Parameters
    ----------
    datasets
        What the node offers, by the name jobs use.
    num_threads
        torch threads for training (see ``LearningRunner``).
    allowed_modules
        Packages a job's ``custom`` model may be imported from; none by default.
    policy
        This node's local policy: every task is checked against it first and refused
        (``PolicyRefusal``, sent as failure code ``refused``) when it falls outside.
    """

    def __init__(
        self,
        datasets: Mapping[str, LocalData],
        *,
        num_threads: int | None = 1,
        allowed_modules: Sequence[str] = (),
        policy: LocalPolicy | None = None,
    ) -> None:
        self._policy = policy
        self._noop = NoopRunner()
        self._learning = LearningRunner(
            datasets, num_threads=num_threads, allowed_modules=allowed_modules
        )
        self._regression = RegressionRunner(datasets, num_threads=num_threads)
        self._text = TextRunner(datasets)  # text_classifier on redacted messages
        self._query = RegressionQuery(self._regression)
        self._secure = SecureTasks(self.fit)  # secure-aggregation sessions (secure_tasks.py)

    def describe(self) -> list[tuple[str, str]]:
        """(name, metadata JSON) of each offered dataset, for the coordinator's Hello.

        A dataset offered as a dataset spec is profiled (schema, rows, missing rates, label
        balance, quality); a bare CSV or Parquet file gets its name, format, size and rows.
        """
        return self._learning.describe()

    def _allowed(self, config: Mapping[str, ConfigValue]) -> None:
        """Refuse (and log why) a task this node's local policy does not allow."""
        if self._policy is None:
            return
        try:
            check_task(self._policy, config)
        except PolicyRefusal as exc:
            log.warning("refused a task: %s", exc)
            raise

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
        if is_regression(config):
            return self._regression, dict(config)
        if is_text(config):
            return self._text, dict(config)
        return self._learning, dict(config)

    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        """The job model's initial weights."""
        self._allowed(config)
        runner, cfg = self._runner(config)
        return runner.init(cfg)

    def stats(self, config: Mapping[str, ConfigValue]) -> Weights:
        """Feature moments ``count``, ``sum``, ``m2`` of the job's training rows (no rows)."""
        self._allowed(config)
        if self._is_noop(config):
            raise ConfigError("model noop has no data: a STATS task needs a learning model")
        if is_regression(config):
            return self._regression.stats(config)
        if is_text(config):
            return self._text.stats(config)
        return self._learning.stats(config)

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        """Train locally from ``weights``; the answer carries the delta."""
        self._allowed(config)
        runner, cfg = self._runner(config)
        return runner.fit(cfg, weights)

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        """Evaluate ``weights`` on the local holdout."""
        self._allowed(config)
        runner, cfg = self._runner(config)
        return runner.evaluate(cfg, weights)

    def secure(
        self, step: SecureStep, config: Mapping[str, ConfigValue], weights: Weights | None
    ) -> SecureAnswer:
        """One secure-aggregation step; its first step trains with ``fit`` (policy-checked)."""
        return self._secure.run(step, config, weights)

    def query(self, config: Mapping[str, ConfigValue], weights: Weights) -> QueryAnswer:
        """Prediction error per group of the job's model on local rows (aggregates only)."""
        self._allowed(config)
        if not is_regression(config):
            raise ConfigError(
                "federated prediction-error queries need a regression model "
                f"(one of linear_regression, mlp_regressor), got {config.get('model.name')!r}"
            )
        return self._query.query(config, weights)
