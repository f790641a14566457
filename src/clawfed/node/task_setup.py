"""A learning task's flat config read back into typed settings (keys: ``coordinator.jobspec``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from clawfed.aggregation import PROXIMAL_MU_KEY, ConfigValue
from clawfed.core import ConfigError
from clawfed.data import ColumnType, Standardizer
from clawfed.learning import FitConfig

#: Task config keys a node reads; ``coordinator.task_config.TaskKey`` defines them (a test ties
#: the two lists, since the node does not import the coordinator).
MODEL_NAME = "model.name"
MODEL_CUSTOM = "model.custom"
MODEL_SETTINGS = "model.settings"
DATASET = "dataset"
TARGET = "data.target"
FEATURES = "data.features"
TYPES = "data.types"
CATEGORIES = "data.categories"
HOLDOUT_FRACTION = "data.holdout_fraction"
STANDARDIZE = "data.standardize"
STANDARDIZER = "data.standardizer"
ROUND = "round"
TRAIN_PREFIX = "train."


@dataclass(frozen=True)
class JobData:
    """The data part of a task: which columns, encoded how, split how."""

    dataset: str
    target: str
    features: tuple[str, ...]
    types: Mapping[str, ColumnType]
    categories: Mapping[str, tuple[str, ...]]
    holdout_fraction: float
    standardize: bool
    seed: int

    def key(self) -> str:
        """A digest of everything that decides which rows are loaded and how they are encoded."""
        body = json.dumps(
            [
                self.dataset,
                self.target,
                self.features,
                sorted((c, str(t)) for c, t in self.types.items()),
                sorted((c, list(v)) for c, v in self.categories.items()),
                self.holdout_fraction,
                self.seed,
            ]
        )
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class TaskSetup:
    """A task config parsed and validated: data, model section, training settings."""

    data: JobData
    model: Mapping[str, object]
    fit: FitConfig
    standardizer: Standardizer | None
    round_no: int | None

    def round_fit(self) -> FitConfig:
        """``fit`` with a seed varied by round, so each round shuffles the batches anew."""
        if self.round_no is None:
            return self.fit
        digest = hashlib.sha256(f"{self.fit.seed}:{self.round_no}".encode()).digest()
        return replace(self.fit, seed=int.from_bytes(digest[:8], "big") >> 1)


def _str(config: Mapping[str, ConfigValue], key: str) -> str:
    value = config.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"task config {key!r} must be a non-empty string, got {value!r}")
    return value


def _json(config: Mapping[str, ConfigValue], key: str, kind: type, default: Any) -> Any:
    if key not in config:
        return default
    text = _str(config, key)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"task config {key!r} is not valid JSON: {exc}") from exc
    if not isinstance(value, kind):
        raise ConfigError(f"task config {key!r} must hold a JSON {kind.__name__}, got {text!r}")
    return value


def parse_task_config(config: Mapping[str, ConfigValue]) -> TaskSetup:
    """Read a learning task's flat config (keys in ``coordinator.jobspec``).

    Raises
    ------
    ConfigError
        Naming the key that is missing or malformed.
    """
    if MODEL_NAME in config and MODEL_CUSTOM in config:
        raise ConfigError(f"task config holds both {MODEL_NAME!r} and {MODEL_CUSTOM!r}")
    settings = _json(config, MODEL_SETTINGS, dict, {})
    if MODEL_CUSTOM in config:
        model: dict[str, object] = {"custom": _str(config, MODEL_CUSTOM), **settings}
    else:
        model = {"name": _str(config, MODEL_NAME), **settings}
    train = {
        k.removeprefix(TRAIN_PREFIX): v for k, v in config.items() if k.startswith(TRAIN_PREFIX)
    }
    if PROXIMAL_MU_KEY in config:
        train[PROXIMAL_MU_KEY] = config[PROXIMAL_MU_KEY]
    fit = FitConfig.from_settings(train)
    features = _json(config, FEATURES, list, None)
    if features is None or not features or not all(isinstance(f, str) and f for f in features):
        raise ConfigError(
            f"task config {FEATURES!r} must be a JSON list of column names, "
            f"got {config.get(FEATURES)!r}"
        )
    raw_types = _json(config, TYPES, dict, {})
    try:
        types = {str(c): ColumnType(t) for c, t in raw_types.items()}
    except ValueError as exc:
        raise ConfigError(f"task config {TYPES!r}: {exc}") from exc
    raw_cats = _json(config, CATEGORIES, dict, {})
    if not all(isinstance(v, list) for v in raw_cats.values()):
        raise ConfigError(f"task config {CATEGORIES!r} must map columns to lists")
    holdout = config.get(HOLDOUT_FRACTION, 0.2)
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0 < holdout < 1:
        raise ConfigError(f"task config {HOLDOUT_FRACTION!r} must be in (0, 1), got {holdout!r}")
    standardize = config.get(STANDARDIZE, False)
    if not isinstance(standardize, bool):
        raise ConfigError(f"task config {STANDARDIZE!r} must be a bool, got {standardize!r}")
    standardizer = None
    if STANDARDIZER in config:
        if not standardize:
            raise ConfigError(f"task config holds {STANDARDIZER!r} but {STANDARDIZE!r} is false")
        standardizer = Standardizer.from_dict(_json(config, STANDARDIZER, dict, {}))
    round_no = config.get(ROUND)
    if round_no is not None and (isinstance(round_no, bool) or not isinstance(round_no, int)):
        raise ConfigError(f"task config {ROUND!r} must be an integer, got {round_no!r}")
    data = JobData(
        dataset=_str(config, DATASET),
        target=_str(config, TARGET),
        features=tuple(features),
        types=types,
        categories={str(c): tuple(str(x) for x in v) for c, v in raw_cats.items()},
        holdout_fraction=float(holdout),
        standardize=standardize,
        seed=fit.seed,
    )
    return TaskSetup(data, model, fit, standardizer, round_no)
