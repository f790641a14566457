"""The job file's ``model:`` section: built-in model names, their settings, custom classes."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``package.module:ClassName`` (nested attribute allowed), as ``learning.custom`` accepts it.
_CUSTOM_PATH = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*")

Scalar = str | int | float | bool
#: A model setting: a scalar or a list of scalars (``hidden: [64, 32]``).
Setting = Scalar | list[Scalar]

#: Built-in model names; mirrors ``clawfed.learning.models.MODEL_NAMES`` (kept torch-free here).
BUILTIN_MODELS: tuple[str, ...] = ("logistic_regression", "mlp")
#: Built-in regression models (MSE loss, MAE/RMSE); mirrors ``learning.regression``.
REGRESSION_MODELS: tuple[str, ...] = ("linear_regression", "mlp_regressor")
#: Text models (hashed n-grams of a text column); mirrors ``learning.text_classifier``.
TEXT_MODELS: tuple[str, ...] = ("text_classifier",)
#: The framework-only model (zeros; measures the round overhead).
NOOP_MODEL = "noop"
#: Settings each model accepts; mirrors ``learning.models`` and ``node.runner.NoopRunner``.
MODEL_SETTINGS: Mapping[str, tuple[str, ...]] = {
    "logistic_regression": (),
    "mlp": ("hidden", "dropout"),
    "linear_regression": (),
    "mlp_regressor": ("hidden", "dropout"),
    "text_classifier": ("classes", "buckets", "dim", "min_n", "max_n", "max_tokens"),
    NOOP_MODEL: ("params", "sleep_s"),
}


class ModelSpec(BaseModel):
    """The model the nodes build: a built-in ``name`` (or ``noop``) or a ``custom`` class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    custom: str | None = None
    settings: dict[str, Setting] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if (self.name is None) == (self.custom is None):
            raise ValueError(
                "set exactly one of `name` (one of "
                f"{', '.join((*BUILTIN_MODELS, NOOP_MODEL))}) or `custom` "
                "('package.module:ClassName')"
            )
        if self.custom is not None:
            if not _CUSTOM_PATH.fullmatch(self.custom):
                raise ValueError(
                    f"custom must look like 'package.module:ClassName', got {self.custom!r}"
                )
            return self
        known = MODEL_SETTINGS.get(str(self.name))
        if known is None:
            raise ValueError(
                f"unknown model {self.name!r}; known models are "
                f"{', '.join((*BUILTIN_MODELS, *REGRESSION_MODELS, *TEXT_MODELS, NOOP_MODEL))} "
                "(or use `custom`)"
            )
        unknown = sorted(k for k in self.settings if k not in known)
        if unknown:
            raise ValueError(
                f"model {self.name}: unknown setting(s) {', '.join(map(repr, unknown))}; "
                f"known settings: {', '.join(known) or 'none'}"
            )
        for key, value in self.settings.items():
            _check_setting(str(self.name), key, value)
        return self

    @property
    def label(self) -> str:
        """The built-in name or the custom path, for messages and reports."""
        return self.name if self.name is not None else str(self.custom)


def _check_setting(model: str, key: str, value: Setting) -> None:
    where = f"model {model}: setting {key!r}"
    if key == "params":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where} must be an integer >= 1, got {value!r}")
    elif key == "sleep_s":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (isinstance(value, int | float) and number and 0.0 <= float(value) < math.inf):
            raise ValueError(f"{where} must be a number of seconds >= 0, got {value!r}")
    elif key == "hidden":
        if not isinstance(value, list) or not value:
            raise ValueError(f"{where} must be a non-empty list of layer widths, got {value!r}")
        for h in value:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"{where}: layer widths must be integers >= 1, got {h!r}")
    elif key == "dropout":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (isinstance(value, int | float) and number and 0.0 <= float(value) < 1.0):
            raise ValueError(f"{where} must be a number in [0, 1), got {value!r}")
    elif key == "classes":
        labels = value if isinstance(value, list) else []
        if len(labels) < 2 or len({str(c) for c in labels}) != len(labels):
            raise ValueError(f"{where} must list at least 2 distinct labels, got {value!r}")
    elif key in ("buckets", "dim", "min_n", "max_n", "max_tokens"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where} must be an integer >= 1, got {value!r}")
