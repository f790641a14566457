"""A node's own policy file: the datasets it offers, for which purposes, under what privacy.

The node checks every task against it and refuses what falls outside, whatever the
coordinator says. An example ``policy.yaml``::

    version: 1
    department: credit
    datasets:
      transactions:
        purposes: [fraud-detection, credit-risk]
    privacy:
      secure_aggregation: true   # every task must use secure aggregation
      max_epsilon: 3.0           # and differential privacy with epsilon <= 3
      max_delta: 1.0e-5
      min_group_size: 20         # query answers cover at least 20 records

The task keys read (as the coordinator sends them, flattened): ``dataset``, ``purpose``,
``privacy.secure_aggregation``, ``privacy.epsilon``, ``privacy.delta`` and, for queries,
``query.min_group_size``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from clawfed.aggregation import ConfigValue
from clawfed.core.errors import ClawfedError, ConfigError

#: The task config key naming what a job uses the data for (``TaskKey.PURPOSE``).
PURPOSE = "purpose"


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


class DatasetOffer(BaseModel):
    """One dataset the node offers and the purposes it may be used for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    purposes: tuple[str, ...] = Field(min_length=1)
    description: str = ""

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for p in value:
            if not p.strip():
                raise ValueError("purposes must not be blank")
        normalized = [_norm(p) for p in value]
        dupes = sorted({p for p in normalized if normalized.count(p) > 1})
        if dupes:
            raise ValueError(f"lists {', '.join(dupes)} more than once")
        return tuple(" ".join(p.split()) for p in value)


class PrivacyMinimums(BaseModel):
    """The least privacy protection a task must ask for to be run here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secure_aggregation: bool = True
    max_epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_delta: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)
    min_group_size: int = Field(default=10, ge=1)


class LocalPolicy(BaseModel):
    """What this node agrees to do with its data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    department: str | None = None
    datasets: dict[str, DatasetOffer] = Field(default_factory=dict)
    privacy: PrivacyMinimums = Field(default_factory=PrivacyMinimums)
    allow_tasks_without_data: bool = False

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, value: dict[str, DatasetOffer]) -> dict[str, DatasetOffer]:
        for name in value:
            if not name.strip() or name != name.strip():
                raise ValueError(f"dataset names must be non-blank without edge spaces: {name!r}")
        return value


class TaskUse(StrEnum):
    """How a task uses the data: training (init, fit, evaluate) or a statistical query."""

    TRAIN = "train"
    QUERY = "query"


class PolicyRule(StrEnum):
    """Which rule of the local policy refused a task."""

    NO_DATASET = "no_dataset"
    UNKNOWN_DATASET = "unknown_dataset"
    NO_PURPOSE = "no_purpose"
    PURPOSE_NOT_ALLOWED = "purpose_not_allowed"
    SECURE_AGGREGATION_OFF = "secure_aggregation_off"
    NO_DIFFERENTIAL_PRIVACY = "no_differential_privacy"
    EPSILON_TOO_HIGH = "epsilon_too_high"
    DELTA_TOO_HIGH = "delta_too_high"
    GROUP_TOO_SMALL = "group_too_small"
    BAD_VALUE = "bad_value"


class PolicyRefusal(ClawfedError):
    """This node's local policy refuses a task; ``rule`` says which rule, ``detail`` why."""

    def __init__(self, rule: PolicyRule, detail: str) -> None:
        super().__init__(f"task refused by this node's local policy ({rule}): {detail}")
        self.rule = rule
        self.detail = detail


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(policy)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling)"
        got = err.get("input")
        scalar = isinstance(got, str | int | float | bool) and err["type"] != "missing"
        parts.append(f"{loc}: {msg}" + (f" (got {got!r})" if scalar else ""))
    return "; ".join(parts)


def parse_policy(text: str, *, source: str = "local policy") -> LocalPolicy:
    """Parse and validate the YAML text of a local policy file."""
    try:
        raw: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with datasets and privacy, got {raw!r}")
    try:
        return LocalPolicy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from exc


def load_policy(path: Path) -> LocalPolicy:
    """Read and validate the local policy file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"local policy {path} cannot be read: {exc}") from exc
    return parse_policy(text, source=f"local policy {path}")


def _number(config: Mapping[str, ConfigValue], key: str) -> float | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyRefusal(PolicyRule.BAD_VALUE, f"{key} must be a finite number, got {value!r}")
    return float(value)


def _check_privacy(p: PrivacyMinimums, config: Mapping[str, ConfigValue], use: TaskUse) -> None:
    secure = config.get("privacy.secure_aggregation", False)
    if not isinstance(secure, bool):
        raise PolicyRefusal(
            PolicyRule.BAD_VALUE,
            f"privacy.secure_aggregation must be true or false, got {secure!r}",
        )
    if p.secure_aggregation and not secure:
        raise PolicyRefusal(
            PolicyRule.SECURE_AGGREGATION_OFF,
            "this node requires secure aggregation; the task has privacy.secure_aggregation off",
        )
    epsilon, delta = _number(config, "privacy.epsilon"), _number(config, "privacy.delta")
    if (epsilon is not None and epsilon <= 0) or (delta is not None and not 0 <= delta < 1):
        raise PolicyRefusal(
            PolicyRule.BAD_VALUE,
            f"privacy.epsilon must be > 0 and privacy.delta in [0, 1), got {epsilon} and {delta}",
        )
    if p.max_epsilon is not None:
        if epsilon is None:
            raise PolicyRefusal(
                PolicyRule.NO_DIFFERENTIAL_PRIVACY,
                f"this node requires differential privacy with epsilon <= {p.max_epsilon}; "
                "the task sets no privacy.epsilon",
            )
        if epsilon > p.max_epsilon:
            raise PolicyRefusal(
                PolicyRule.EPSILON_TOO_HIGH,
                f"privacy.epsilon must be <= {p.max_epsilon} here, got {epsilon}",
            )
    if p.max_delta is not None and delta is not None and delta > p.max_delta:
        raise PolicyRefusal(
            PolicyRule.DELTA_TOO_HIGH, f"privacy.delta must be <= {p.max_delta} here, got {delta}"
        )
    if use is TaskUse.QUERY:
        size = config.get("query.min_group_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < p.min_group_size:
            raise PolicyRefusal(
                PolicyRule.GROUP_TOO_SMALL,
                f"query answers here must cover at least {p.min_group_size} records; the task "
                f"sets query.min_group_size = {size!r}",
            )


def check_task(
    policy: LocalPolicy, task_config: Mapping[str, ConfigValue], use: TaskUse = TaskUse.TRAIN
) -> None:
    """Raise :class:`PolicyRefusal` unless ``policy`` allows the task ``task_config`` describes.

    Parameters
    ----------
    policy:
        This node's local policy.
    task_config:
        The task's settings as the node received them (flat keys, see the module docs).
    use:
        Whether the task trains on the data or answers a statistical query.
    """
    dataset = task_config.get("dataset")
    if dataset is None:
        if policy.allow_tasks_without_data:
            return
        raise PolicyRefusal(
            PolicyRule.NO_DATASET,
            "the task names no dataset; this node runs tasks only on the datasets it offers "
            f"({', '.join(sorted(policy.datasets)) or 'none'})",
        )
    offer = policy.datasets.get(dataset) if isinstance(dataset, str) else None
    if offer is None:
        raise PolicyRefusal(
            PolicyRule.UNKNOWN_DATASET,
            f"dataset {dataset!r} is not offered by this node "
            f"(offered: {', '.join(sorted(policy.datasets)) or 'none'})",
        )
    purpose = task_config.get(PURPOSE)
    if not isinstance(purpose, str) or not purpose.strip():
        raise PolicyRefusal(
            PolicyRule.NO_PURPOSE,
            f"the task must name its purpose; dataset {dataset!r} may be used for "
            f"{', '.join(offer.purposes)}",
        )
    if _norm(purpose) not in {_norm(p) for p in offer.purposes}:
        raise PolicyRefusal(
            PolicyRule.PURPOSE_NOT_ALLOWED,
            f"dataset {dataset!r} may not be used for {purpose!r} "
            f"(allowed: {', '.join(offer.purposes)})",
        )
    _check_privacy(policy.privacy, task_config, TaskUse(use))


def load_node_policy(path: Path, department: str) -> LocalPolicy:
    """Load the policy file of the node of ``department``; refuse one written for another."""
    policy = load_policy(path)
    if policy.department is not None and policy.department != department:
        raise ConfigError(
            f"local policy {path} is for department {policy.department!r}, but this node's "
            f"kit belongs to {department!r}"
        )
    return policy
