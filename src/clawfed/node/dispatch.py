"""Pick the runner a task needs from its ``model`` setting; parse ``--data`` arguments."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clawfed.aggregation import ConfigValue
from clawfed.core import ConfigError, Weights
from clawfed.node.runner import EvalAnswer, FitAnswer, NoopRunner, TaskRunner


@dataclass(frozen=True)
class LocalData:
    """A dataset the node offers: name, file, and optional harmonization file."""

    name: str
    path: Path
    mapping: Path | None = None


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
    """Turn ``--data fraud=tx.csv --mapping fraud=map.yaml`` into ``LocalData`` records."""
    files = _pairs(data, "--data")
    maps = _pairs(mapping, "--mapping")
    unknown = sorted(set(maps) - set(files))
    if unknown:
        raise ConfigError(f"--mapping for unknown dataset(s) {', '.join(unknown)}")
    for name, path in {**files, **maps}.items():
        if not path.is_file():
            raise ConfigError(f"dataset {name!r}: file {path} does not exist")
    return {n: LocalData(n, p, maps.get(n)) for n, p in files.items()}


class DispatchRunner:
    """Routes each task to the runner for its model (``noop`` needs no data)."""

    def __init__(self, datasets: Mapping[str, LocalData]) -> None:
        self._datasets = dict(datasets)
        self._noop = NoopRunner()

    def describe(self) -> list[tuple[str, str]]:
        """(name, metadata JSON) of each offered dataset, for the coordinator."""
        return [(n, json.dumps({"file": d.path.name})) for n, d in self._datasets.items()]

    def _runner(self, config: Mapping[str, ConfigValue]) -> TaskRunner:
        model = config.get("model")
        if model == "noop":
            return self._noop
        raise ConfigError(f"this node cannot run model {model!r}")

    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        return self._runner(config).init(config)

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        return self._runner(config).fit(config, weights)

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        return self._runner(config).evaluate(config, weights)
