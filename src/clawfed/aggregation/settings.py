"""Bases of the pydantic models holding a strategy's or a job-file section's settings."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from clawfed.aggregation.base import Strategy
from clawfed.core import ConfigError


class StrategySettings(BaseModel):
    """Validated, frozen settings of one strategy; unknown names and NaN are refused.

    Values are strict: ``f: "1"`` or ``f: true`` is an error, not a silent conversion.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @abstractmethod
    def build(self) -> Strategy:
        """A fresh strategy configured by these settings."""


class SectionSettings(BaseModel):
    """Validated, frozen settings of one job-file section (e.g. ``fedbuff:``), strict like
    ``StrategySettings``; subclasses name their section in ``section``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    section: ClassVar[str]

    @classmethod
    def from_job(cls, data: Mapping[str, object]) -> Self:
        """Validate this section of a job file.

        Raises
        ------
        ConfigError
            Naming every unknown setting and every value that breaks its rule.
        """
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            problems = "; ".join(_problem(e, cls.section) for e in exc.errors())
            raise ConfigError(f"invalid {cls.section} settings: {problems}") from exc


def _problem(err: ErrorDetails, section: str) -> str:
    where = ".".join(str(p) for p in err["loc"]) or section
    if err["type"] == "missing":
        return f"{where}: setting is required"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown setting"
    return f"{where}: {err['msg'].lower()}, got {err['input']!r}"
