"""The job file: what to train, with whom, for how many rounds, aggregated how."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clawfed.core import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

Scalar = str | int | float | bool


class ModelSpec(BaseModel):
    """Which model the nodes build, and its settings (``noop`` measures the framework)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    settings: dict[str, Scalar] = Field(default_factory=dict)


class StrategySpec(BaseModel):
    """Aggregation strategy by name, with its settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "fedavg"
    settings: dict[str, Scalar] = Field(default_factory=dict)


class JobSpec(BaseModel):
    """A federated training job as written in a job file (YAML)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: ModelSpec
    dataset: str | None = None
    rounds: int = Field(ge=1, le=100_000)
    min_nodes: int = Field(default=1, ge=1)
    round_deadline_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    participants: tuple[str, ...] | None = None
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    train: dict[str, Scalar] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "must be 1-64 letters, digits, '_', '.' or '-' starting with a letter or digit, "
                f"got {value!r}"
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

    @model_validator(mode="after")
    def _enough_participants(self) -> JobSpec:
        if self.participants is not None and len(self.participants) < self.min_nodes:
            raise ValueError(
                f"min_nodes is {self.min_nodes} but only {len(self.participants)} "
                "participant(s) are listed"
            )
        return self

    def to_yaml(self) -> str:
        """The spec as YAML (what is stored and shown)."""
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(job)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_job(text: str, *, source: str = "job file") -> JobSpec:
    """Parse and validate a job file's YAML text."""
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
