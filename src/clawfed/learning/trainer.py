"""The ``Trainer`` protocol and the records it takes and returns (no torch needed here)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from clawfed.core import ConfigError, DataError, JobError, Metrics, Weights, validate_metrics

#: Values a job file or a per-round instruction may carry for a config field.
SettingValue = str | int | float | bool

_MAX_SEED = 2**63 - 1


class Optimizer(StrEnum):
    """Local optimizer a node uses during ``fit``."""

    SGD = "sgd"
    ADAM = "adam"


class TrainingDiverged(JobError):
    """The training loss became NaN or infinite; the weights from before ``fit`` are kept."""

    def __init__(self, detail: str, *, epoch: int, batch: int) -> None:
        super().__init__(detail)
        self.epoch = epoch
        self.batch = batch


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return out


def _from_settings(kind: str, allowed: Sequence[str], settings: Mapping[str, object]) -> None:
    unknown = sorted(k for k in settings if k not in allowed)
    if unknown:
        raise ConfigError(
            f"{kind}: unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"known settings are {', '.join(allowed)}"
        )


@dataclass(frozen=True)
class TrainData:
    """A node's local examples: ``features`` (n × d float32), ``labels`` (n int64), names.

    The arrays are not copied; treat them as read-only. Build one from arbitrary array-likes
    with :meth:`from_arrays`, which converts dtypes.
    """

    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    feature_names: tuple[str, ...]

    def __post_init__(self) -> None:
        x, y = self.features, self.labels
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
            raise DataError(f"features must be a 2-D float32 array, got {_describe(x)}")
        if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1:
            raise DataError(f"labels must be a 1-D int64 array, got {_describe(y)}")
        n, d = x.shape
        if n == 0:
            raise DataError("training data must hold at least one row, got 0")
        if d == 0:
            raise DataError("training data must hold at least one feature column, got 0")
        if y.shape[0] != n:
            raise DataError(f"features have {n} rows but labels have {y.shape[0]}")
        names = tuple(self.feature_names)
        object.__setattr__(self, "feature_names", names)
        if len(names) != d:
            raise DataError(f"features have {d} columns but {len(names)} feature name(s) given")
        for nm in names:
            if not isinstance(nm, str) or not nm:
                raise DataError(f"feature names must be non-empty strings, got {nm!r}")
        if len(set(names)) != d:
            dup = sorted({nm for nm in names if names.count(nm) > 1})
            raise DataError(f"feature names must be unique, repeated: {', '.join(dup)}")
        if not bool(np.isfinite(x).all()):
            bad_cols = [names[j] for j in np.flatnonzero(~np.isfinite(x).all(axis=0))]
            raise DataError(
                f"features must be finite; NaN or Inf found in column(s) {', '.join(bad_cols)} "
                "(impute missing values before training)"
            )
        if int(y.min()) < 0:
            raise DataError(f"labels must be >= 0, got {int(y.min())}")

    @classmethod
    def from_arrays(
        cls, features: npt.ArrayLike, labels: npt.ArrayLike, feature_names: Sequence[str]
    ) -> TrainData:
        """Copy ``features`` to float32 and ``labels`` to int64 and validate them.

        Raises
        ------
        DataError
            When a label is not integral or the shapes disagree.
        """
        x = np.array(features, dtype=np.float32, copy=True, order="C")
        y_raw = np.asarray(labels)
        if y_raw.dtype.kind == "f":
            if not bool(np.isfinite(y_raw).all()) or not bool((y_raw == np.round(y_raw)).all()):
                raise DataError("labels must be whole numbers, got a non-integral value")
        elif y_raw.dtype.kind not in "iub":
            raise DataError(f"labels must be integers, got dtype {y_raw.dtype}")
        y = np.array(y_raw, dtype=np.int64, copy=True)
        return cls(x, y, tuple(feature_names))

    @property
    def num_samples(self) -> int:
        """Number of rows."""
        return int(self.features.shape[0])

    @property
    def num_features(self) -> int:
        """Number of feature columns."""
        return int(self.features.shape[1])


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.ndim}-D {a.dtype} array of shape {a.shape}"
    return type(a).__name__


@dataclass(frozen=True)
class FitConfig:
    """How a node trains locally for one round.

    ``proximal_mu`` > 0 turns on FedProx (Li et al., "Federated Optimization in Heterogeneous
    Networks", MLSys 2020): the loss gains ``mu / 2 * ||w - w_global||^2``.
    """

    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.01
    optimizer: Optimizer = Optimizer.SGD
    momentum: float = 0.0
    weight_decay: float = 0.0
    proximal_mu: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "epochs", _check_int("epochs", self.epochs, 1))
        object.__setattr__(self, "batch_size", _check_int("batch_size", self.batch_size, 1))
        seed = _check_int("seed", self.seed, 0)
        if seed > _MAX_SEED:
            raise ConfigError(f"seed must be <= {_MAX_SEED}, got {seed}")
        object.__setattr__(self, "seed", seed)
        lr = _check_float("lr", self.lr)
        if lr <= 0.0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        object.__setattr__(self, "lr", lr)
        momentum = _check_float("momentum", self.momentum)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        object.__setattr__(self, "momentum", momentum)
        for name in ("weight_decay", "proximal_mu"):
            value = _check_float(name, getattr(self, name))
            if value < 0.0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
            object.__setattr__(self, name, value)
        try:
            opt = Optimizer(self.optimizer)
        except ValueError:
            known = ", ".join(o.value for o in Optimizer)
            raise ConfigError(f"optimizer must be one of {known}, got {self.optimizer!r}") from None
        if opt is Optimizer.ADAM and momentum != 0.0:
            raise ConfigError(
                f"momentum applies to sgd only; got momentum={momentum} with optimizer adam"
            )
        object.__setattr__(self, "optimizer", opt)

    @classmethod
    def from_settings(cls, settings: Mapping[str, SettingValue]) -> FitConfig:
        """Build from a job file's ``fit`` section or a round's settings; unknown keys fail."""
        names = [f.name for f in fields(cls)]
        _from_settings("fit config", names, settings)
        return cls(**settings)  # type: ignore[arg-type]  # types are checked in __post_init__


@dataclass(frozen=True)
class EvalConfig:
    """How a node evaluates: batch size and the probability threshold for a positive."""

    batch_size: int = 1024
    threshold: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_size", _check_int("batch_size", self.batch_size, 1))
        t = _check_float("threshold", self.threshold)
        if not 0.0 < t < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")
        object.__setattr__(self, "threshold", t)

    @classmethod
    def from_settings(cls, settings: Mapping[str, SettingValue]) -> EvalConfig:
        """Build from a job file's ``evaluate`` section; unknown keys fail."""
        names = [f.name for f in fields(cls)]
        _from_settings("eval config", names, settings)
        return cls(**settings)  # type: ignore[arg-type]  # types are checked in __post_init__


def _check_result(kind: str, num_samples: int) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
        raise ValueError(f"{kind}.num_samples must be an integer > 0, got {num_samples!r}")


@dataclass(frozen=True)
class FitResult:
    """What local training reports: samples used and metrics such as the train ``loss``."""

    num_samples: int
    metrics: Metrics = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        _check_result("FitResult", self.num_samples)
        object.__setattr__(self, "metrics", validate_metrics(self.metrics, where="FitResult"))


@dataclass(frozen=True)
class EvalResult:
    """What local evaluation reports; ``notes`` say why a metric was left out."""

    num_samples: int
    metrics: Metrics = field(default_factory=lambda: MappingProxyType({}))
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_result("EvalResult", self.num_samples)
        object.__setattr__(self, "metrics", validate_metrics(self.metrics, where="EvalResult"))
        object.__setattr__(self, "notes", tuple(self.notes))


@runtime_checkable
class Trainer(Protocol):
    """Trains and evaluates one model on a node's local data; frameworks convert at the edge."""

    def get_weights(self) -> Weights:
        """A snapshot of the current weights (later training does not change it)."""
        ...

    def set_weights(self, weights: Weights) -> None:
        """Replace the model's weights, e.g. with the global model of this round."""
        ...

    def fit(self, data: TrainData, config: FitConfig) -> FitResult:
        """Train on ``data`` starting from the current weights."""
        ...

    def evaluate(self, data: TrainData, config: EvalConfig) -> EvalResult:
        """Compute metrics of the current weights on ``data`` without changing them."""
        ...
