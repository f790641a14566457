"""Build a strategy from the ``strategy:`` name and ``settings:`` mapping of a job file."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from clawfed.aggregation.base import Strategy
from clawfed.aggregation.fedadagrad import FedAdagradSettings
from clawfed.aggregation.fedadam import FedAdamSettings
from clawfed.aggregation.fedavg import FedAvg
from clawfed.aggregation.fedavgm import FedAvgMSettings
from clawfed.aggregation.fedprox import FedProxSettings
from clawfed.aggregation.fedyogi import FedYogiSettings
from clawfed.aggregation.krum import KrumSettings, MultiKrumSettings
from clawfed.aggregation.median import MedianSettings
from clawfed.aggregation.norm_bounding import NormBoundingSettings
from clawfed.aggregation.quality_weighted import QualityWeightedSettings
from clawfed.aggregation.settings import StrategySettings
from clawfed.aggregation.trimmed_mean import TrimmedMeanSettings
from clawfed.core import ConfigError


class FedAvgSettings(StrategySettings):
    """FedAvg has no settings."""

    def build(self) -> FedAvg:
        return FedAvg()


_SETTINGS: dict[str, type[StrategySettings]] = {
    "fedavg": FedAvgSettings,
    "fedavgm": FedAvgMSettings,
    "fedadam": FedAdamSettings,
    "fedyogi": FedYogiSettings,
    "fedadagrad": FedAdagradSettings,
    "fedprox": FedProxSettings,
    "median": MedianSettings,
    "trimmed_mean": TrimmedMeanSettings,
    "krum": KrumSettings,
    "multi_krum": MultiKrumSettings,
    "norm_bounding": NormBoundingSettings,
    "quality_weighted": QualityWeightedSettings,
}


def known_strategies() -> tuple[str, ...]:
    """Names accepted by ``build_strategy``, sorted."""
    return tuple(sorted(_SETTINGS))


def settings_model(name: str) -> type[StrategySettings]:
    """The pydantic model of strategy ``name``'s settings (for docs and schema export).

    Raises
    ------
    ConfigError
        If ``name`` is not a known strategy; the message lists the known names.
    """
    model = _SETTINGS.get(name)
    if model is None:
        close = difflib.get_close_matches(name, _SETTINGS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown strategy {name!r}{hint}; known strategies: {', '.join(known_strategies())}"
        )
    return model


def _describe(name: str, model: type[StrategySettings], err: ErrorDetails) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "settings"
    allowed = ", ".join(model.model_fields) or "none"
    if err["type"] == "extra_forbidden":
        return f"unknown setting {field!r} (settings of {name!r}: {allowed})"
    if err["type"] == "missing":
        return f"setting {field!r} is required"
    return f"setting {field!r}: {err['msg'].lower()}, got {err['input']!r}"


def build_strategy(name: str, settings: Mapping[str, object]) -> Strategy:
    """A fresh strategy ``name`` configured by ``settings`` (as written in a job file).

    Raises
    ------
    ConfigError
        If the name is unknown, a setting is unknown or missing, or a value breaks its rule
        (e.g. ``krum`` with ``f: -1``); the message names each offending setting and value.
    """
    model = settings_model(name)
    if not isinstance(settings, Mapping):
        raise ConfigError(
            f"settings of strategy {name!r} must be a mapping, got {type(settings).__name__}"
        )
    try:
        parsed = model.model_validate(dict(settings))
    except ValidationError as exc:
        problems = "; ".join(_describe(name, model, e) for e in exc.errors())
        raise ConfigError(f"invalid settings for strategy {name!r}: {problems}") from exc
    return parsed.build()
