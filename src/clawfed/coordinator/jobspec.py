"""The job file: what to train on which columns, with whom, for how many rounds, aggregated how.

A job file is YAML; ``parse_job`` validates it into a ``JobSpec``. ``task_config.task_config``
turns a spec into the flat scalar config every task carries to the nodes.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from clawfed.aggregation.fedbuff import FedBuffSettings
from clawfed.aggregation.free_riders import FreeRiderSettings
from clawfed.aggregation.job_options import (
    AnomalyOptions,
    ContributionOptions,
    WeightingOptions,
    check_sections,
    policy_shorthand,
)
from clawfed.aggregation.job_options import (
    JobMode as JobMode,  # re-exported: jobs and tests name the mode from here
)
from clawfed.coordinator.model_spec import NOOP_MODEL, ModelSpec, Scalar
from clawfed.coordinator.privacy_spec import PrivacySpec
from clawfed.coordinator.valuemap import ValueMapping
from clawfed.core import ConfigError
from clawfed.learning.trainer import FitConfig
from clawfed.wire.codecs import CodecName

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

ColumnName = Annotated[str, Field(min_length=1)]
ColumnKind = Literal["numeric", "categorical", "binary"]

#: ``FitConfig`` fields a job file may set under ``train`` (``proximal_mu`` comes from fedprox).
TRAIN_KEYS: tuple[str, ...] = tuple(f.name for f in fields(FitConfig) if f.name != "proximal_mu")
_FLOAT_TRAIN_KEYS = frozenset({"lr", "momentum", "weight_decay"})


#: The job-file sections the aggregation helper's code reads.
AGGREGATION_SECTIONS = ("weighting", "contribution", "free_riders", "compression", "anomaly")


def _codec_shorthand(value: Any) -> Any:
    return {"codec": value} if isinstance(value, str) else value


class CompressionSpec(BaseModel):
    """How nodes encode their updates: ``none``, ``fp16``, ``int8`` or ``topk``.

    ``topk`` sends the ``topk_ratio`` share of each tensor's largest entries; with
    ``error_feedback`` the node keeps what a lossy codec dropped and adds it to its next
    update (``wire.codecs.ErrorFeedback``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    codec: CodecName = CodecName.NONE
    topk_ratio: float = Field(default=0.01, gt=0.0, le=1.0)
    error_feedback: bool = True


def _category_name(value: object) -> object:
    """``5411`` and ``5411.0`` become ``"5411"``, ``True`` ``"true"`` (as ``data.category_key``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return value


CategoryName = Annotated[str, BeforeValidator(_category_name), Field(min_length=1)]


class StrategySpec(BaseModel):
    """Aggregation strategy by name, with its settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "fedavg"
    settings: dict[str, Scalar] = Field(default_factory=dict)


class DataSpec(BaseModel):
    """The shared columns of a job: target, features, their types and categories.

    Every department encodes the features the same way only if every categorical feature
    lists its categories here (its one-hot layout); a feature with ``categories`` and no
    declared type is categorical. ``holdout_fraction`` of each node's rows (per class) is
    held out for evaluation; ``standardize`` scales the encoded features with moments pooled
    over all nodes (Chan, Golub and LeVeque, 1979), never with any node's rows.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: ColumnName
    features: tuple[ColumnName, ...] = Field(min_length=1)
    types: dict[ColumnName, ColumnKind] = Field(default_factory=dict)
    categories: dict[ColumnName, tuple[CategoryName, ...]] = Field(default_factory=dict)
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    standardize: bool = True

    @model_validator(mode="after")
    def _check_columns(self) -> DataSpec:
        doubled = sorted({f for f in self.features if self.features.count(f) > 1})
        if doubled:
            raise ValueError(f"features lists {doubled} more than once")
        if self.target in self.features:
            raise ValueError(f"target {self.target!r} must not also be a feature")
        for option in ("types", "categories"):
            stray = sorted(set(getattr(self, option)) - set(self.features))
            if stray:
                raise ValueError(f"{option} names column(s) {stray} that are not features")
        for col, kind in self.types.items():
            if kind == "categorical" and col not in self.categories:
                raise ValueError(
                    f"categorical feature {col!r} needs its list of categories under "
                    "`categories` so that every department one-hot encodes it the same way"
                )
        for col, cats in self.categories.items():
            declared = self.types.get(col)
            if declared == "numeric":
                raise ValueError(f"categories given for {col!r}, which types declares numeric")
            if not cats or len(set(cats)) != len(cats):
                raise ValueError(f"categories of {col!r} must be a non-empty list without repeats")
            if declared == "binary" and len(cats) != 2:
                raise ValueError(
                    f"binary column {col!r} needs exactly 2 categories, got {len(cats)}"
                )
        return self

    def declared_types(self) -> dict[str, str]:
        """``types``, plus ``categorical`` for a feature given ``categories`` but no type."""
        return dict.fromkeys(self.categories, "categorical") | dict(self.types)


class JobSpec(BaseModel):
    """A federated training job as written in a job file (YAML).

    ``evaluate_every``: the nodes evaluate the global model on their holdout after every
    n-th round (and after the last); 0 means never.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: ModelSpec
    dataset: str | None = None
    data: DataSpec | None = None
    rounds: int = Field(ge=1, le=100_000)
    min_nodes: int = Field(default=1, ge=1)
    round_deadline_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    participants: tuple[str, ...] | None = None
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    train: dict[str, Scalar] = Field(default_factory=dict)
    evaluate_every: int = Field(default=1, ge=0)
    mode: JobMode = JobMode.SYNC
    fedbuff: FedBuffSettings | None = None
    weighting: WeightingOptions | None = None
    contribution: ContributionOptions | None = None
    free_riders: Annotated[FreeRiderSettings | None, BeforeValidator(policy_shorthand)] = None
    compression: Annotated[CompressionSpec | None, BeforeValidator(_codec_shorthand)] = None
    anomaly: AnomalyOptions | None = None
    #: What the job uses the departments' data for; sent to every node with each task.
    purpose: str | None = Field(default=None, min_length=1, max_length=500)
    #: Whether each department's head must approve (for ``purpose``) before its data is used.
    requires_approval: bool = False
    privacy: PrivacySpec | None = None  # secure aggregation, DP (coordinator/privacy_spec.py)
    value: ValueMapping | None = None  # business value of a metric change (valuemap.py)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "must be 1-64 letters, digits, '_', '.' or '-' starting with a letter or digit, "
                f"got {value!r}"
            )
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                "must be the name a node offers its data under (1-64 letters, digits, '_', "
                f"'.' or '-'), got {value!r}"
            )
        return value

    @field_validator("participants")
    @classmethod
    def _participants(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must name at least one node, or be left out to mean every node")
        dupes = sorted({p for p in value if value.count(p) > 1})
        if dupes:
            raise ValueError(f"lists {', '.join(dupes)} more than once")
        return value

    @field_validator("train")
    @classmethod
    def _train(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        if "proximal_mu" in value:
            raise ValueError(
                "proximal_mu is not a train setting; choose `strategy: {name: fedprox, "
                "settings: {proximal_mu: ...}}` instead"
            )
        unknown = sorted(k for k in value if k not in TRAIN_KEYS)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(map(repr, unknown))}; "
                f"known settings are {', '.join(TRAIN_KEYS)}"
            )
        out = {k: _yaml_number(k, v) for k, v in value.items()}
        try:
            FitConfig.from_settings(out)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return out

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if self.participants is not None and len(self.participants) < self.min_nodes:
            raise ValueError(
                f"min_nodes is {self.min_nodes} but only {len(self.participants)} "
                "participant(s) are listed"
            )
        if self.requires_approval and (self.purpose is None or not self.purpose.strip()):
            raise ValueError(
                "requires_approval is true, so the job must name its `purpose` (the use each "
                "department's head approves)"
            )
        if self.model.name != NOOP_MODEL:
            missing = [f for f in ("dataset", "data") if getattr(self, f) is None]
            if missing:
                raise ValueError(
                    f"model {self.model.label} trains on data: add "
                    f"{' and '.join(f'`{m}`' for m in missing)} to the job file"
                )
        if self.privacy is not None:
            self.privacy.check_job(self.participants, self.min_nodes, self.strategy.name)
        self._check_aggregation()
        return self

    def _check_aggregation(self) -> None:
        """Weighting, free riders, compression and mode must suit the rest of the job."""
        sections = (*AGGREGATION_SECTIONS, "privacy", "fedbuff")
        check_sections(
            strategy=self.strategy.name,
            mode=self.mode,
            present={s for s in sections if getattr(self, s) is not None},
            policy=None if self.free_riders is None else self.free_riders.policy,
            private_rounds=self.privacy is not None and self.privacy.private_rounds,
            requires_approval=self.requires_approval,
        )

    def anomaly_options(self) -> AnomalyOptions:
        """The ``anomaly`` section, defaults filled in when the job has none."""
        return self.anomaly or AnomalyOptions()

    def fit_config(self) -> FitConfig:
        """The local training settings, defaults filled in (``proximal_mu`` stays 0)."""
        return FitConfig.from_settings(self.train)

    def to_yaml(self) -> str:
        """The spec as YAML (what is stored and shown); ``parse_job`` reads it back equal."""
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _yaml_number(key: str, value: Scalar) -> Scalar:
    """YAML 1.1 reads ``1e-3`` as text; accept it for the float settings."""
    if key in _FLOAT_TRAIN_KEYS and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(job)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        elif err["type"] not in ("value_error", "missing"):
            shown = repr(err.get("input"))
            msg = f"{msg}, got {shown if len(shown) <= 60 else shown[:57] + '...'}"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_job(text: str, *, source: str = "job file") -> JobSpec:
    """Parse and validate a job file's YAML text.

    Raises
    ------
    ConfigError
        Naming each wrong field and the rule it breaks.
    """
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with name, model, rounds…")
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from exc
