"""Base of the pydantic models holding one strategy's settings as a job file states them."""

from __future__ import annotations

from abc import abstractmethod

from pydantic import BaseModel, ConfigDict

from clawfed.aggregation.base import Strategy


class StrategySettings(BaseModel):
    """Validated, frozen settings of one strategy; unknown names and NaN are refused.

    Values are strict: ``f: "1"`` or ``f: true`` is an error, not a silent conversion.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @abstractmethod
    def build(self) -> Strategy:
        """A fresh strategy configured by these settings."""
