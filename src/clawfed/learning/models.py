"""Built-in tabular binary classifiers and the factory that builds a model from a job file."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from clawfed.core import ConfigError
from clawfed.learning.custom import build_custom_model


class LinearScorer(nn.Module):
    """One linear layer; ``forward`` returns one value per row, shape ``(batch,)``."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(_check_n_features(n_features), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out.squeeze(-1)


class LogisticRegression(LinearScorer):
    """One linear layer; ``forward`` returns one logit per row, shape ``(batch,)``."""


class MLP(nn.Module):
    """Fully connected ReLU layers with dropout; one logit per row, shape ``(batch,)``."""

    def __init__(self, n_features: int, hidden: Sequence[int], dropout: float = 0.0) -> None:
        super().__init__()
        width = _check_n_features(n_features)
        sizes = _check_hidden(hidden)
        p = _check_dropout(dropout)
        layers: list[nn.Module] = []
        for h in sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if p > 0.0:
                layers.append(nn.Dropout(p))
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out.squeeze(-1)


def _check_n_features(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n_features must be an integer >= 1, got {n!r}")
    return n


def _check_hidden(hidden: object) -> tuple[int, ...]:
    if isinstance(hidden, str | bytes) or not isinstance(hidden, Sequence):
        raise ConfigError(f"hidden must be a list of layer widths, got {hidden!r}")
    if not hidden:
        raise ConfigError(
            "hidden must list at least one layer width, got []; "
            "use logistic_regression for a model without hidden layers"
        )
    for h in hidden:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise ConfigError(f"hidden layer widths must be integers >= 1, got {h!r}")
    return tuple(int(h) for h in hidden)


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Draw from ``seed`` inside the block and leave torch's global random state as it was."""
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_dropout(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= float(p) < 1.0:
        raise ConfigError(f"dropout must be a number in [0, 1), got {p!r}")
    return float(p)


def logistic_regression(n_features: int) -> nn.Module:
    """Logistic regression over ``n_features`` inputs, emitting one logit per row."""
    return LogisticRegression(n_features)


def mlp(n_features: int, hidden: Sequence[int], dropout: float = 0.0) -> nn.Module:
    """A multi-layer perceptron with ReLU hidden layers of widths ``hidden``; one logit out."""
    return MLP(n_features, hidden, dropout)


#: Built-in model names and the settings each accepts (with defaults).
_BUILTIN_SETTINGS: dict[str, dict[str, object]] = {
    "logistic_regression": {},
    "mlp": {"hidden": [64, 32], "dropout": 0.0},
}

#: Names accepted by :func:`build_model`.
MODEL_NAMES: tuple[str, ...] = tuple(_BUILTIN_SETTINGS)


def _construct(name: str, n_features: int, settings: Mapping[str, object]) -> nn.Module:
    defaults = _BUILTIN_SETTINGS.get(name)
    if defaults is None:
        raise ConfigError(f"unknown model {name!r}; known models are {', '.join(MODEL_NAMES)}")
    unknown = sorted(k for k in settings if k not in defaults)
    if unknown:
        known = ", ".join(defaults) or "none"
        raise ConfigError(
            f"model {name}: unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"known settings: {known}"
        )
    merged = {**defaults, **settings}
    if name == "mlp":
        return mlp(n_features, _check_hidden(merged["hidden"]), _check_dropout(merged["dropout"]))
    return logistic_regression(n_features)


def build_model(
    name: str,
    n_features: int,
    settings: Mapping[str, object] | None = None,
    *,
    seed: int | None = None,
) -> nn.Module:
    """Build the built-in model ``name`` (see ``MODEL_NAMES``) with its ``settings``.

    With ``seed`` the initial weights are drawn from that seed without touching torch's
    global random state; without it they come from the global generator.

    Raises
    ------
    ConfigError
        For an unknown model name (the known ones are listed) or a bad or unknown setting.
    """
    with _seeded(seed):
        return _construct(name, n_features, dict(settings or {}))


def model_from_spec(
    spec: Mapping[str, object],
    n_features: int,
    *,
    seed: int | None = None,
    allowed_modules: Sequence[str] | None = None,
) -> nn.Module:
    """Build the model a job file's ``model:`` section describes.

    ``{"name": "mlp", "hidden": [32], "dropout": 0.1}`` builds a built-in model;
    ``{"custom": "mypkg.models:MyNet", ...}`` builds a user's class (see ``custom.py``).
    Every other key is a setting passed to the model.

    Raises
    ------
    ConfigError
        When the section names both or neither of ``name`` and ``custom``, or building fails.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(f"model section must be a mapping, got {type(spec).__name__}")
    has_name, has_custom = "name" in spec, "custom" in spec
    if has_name == has_custom:
        raise ConfigError(
            "model section must set exactly one of 'name' (a built-in model: "
            f"{', '.join(MODEL_NAMES)}) or 'custom' ('package.module:ClassName'), "
            f"got keys {sorted(spec)}"
        )
    key = "name" if has_name else "custom"
    target = spec[key]
    if not isinstance(target, str):
        raise ConfigError(f"model {key} must be a string, got {target!r}")
    settings = {k: v for k, v in spec.items() if k != key}
    if has_name:
        return build_model(target, n_features, settings, seed=seed)
    _check_n_features(n_features)
    with _seeded(seed):
        return build_custom_model(target, n_features, settings, allowed_modules=allowed_modules)
