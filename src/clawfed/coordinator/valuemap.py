"""What a change of a job's metric is worth in business terms (``value:`` in a job file).

A job may declare, for instance, that each point (0.01) of recall at 1 % FPR avoids about
120 万元 of fraud loss a year::

    value:
      metric: recall_at_1pct_fpr
      per: 0.01
      amount: 120
      unit: 万元/年
      meaning: 避免的欺诈损失

Round and version reports then state the change in that unit beside the metric.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

_METRIC = re.compile(r"^[A-Za-z][A-Za-z0-9_.@%-]{0,63}$")


class ValueMapping(BaseModel):
    """Business value of a metric's change: ``amount`` ``unit`` per ``per`` of ``metric``.

    ``higher_is_better`` says which way is an improvement (false for errors such as MAE).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    metric: str
    per: float = Field(gt=0)
    amount: float
    unit: str = Field(min_length=1, max_length=32)
    meaning: str | None = Field(default=None, min_length=1, max_length=80)
    higher_is_better: bool = True

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not _METRIC.match(value):
            raise ValueError(
                f"must be a metric name as the nodes report it (e.g. roc_auc), got {value!r}"
            )
        return value

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: float) -> float:
        if value == 0:
            raise ValueError("must not be 0 (a change worth nothing needs no mapping)")
        return value


@dataclass(frozen=True)
class ValueChange:
    """A metric's change and what it is worth (positive: an improvement)."""

    mapping: ValueMapping
    before: float
    after: float

    @property
    def delta(self) -> float:
        """``after - before`` in the metric's own units."""
        return self.after - self.before

    @property
    def worth(self) -> float:
        """The change in the mapping's unit; positive when the metric improved."""
        gain = self.delta if self.mapping.higher_is_better else -self.delta
        return gain / self.mapping.per * self.mapping.amount

    def text(self, *, zh: bool = True) -> str:
        """One line, e.g. "recall_at_1pct_fpr +0.0200 ≈ +240 万元/年（避免的欺诈损失）"."""
        m = self.mapping
        amount = _number(self.worth)
        if zh:
            what = f"（{m.meaning}）" if m.meaning else ""
            return f"{m.metric} {self.delta:+.4f} ≈ {amount} {m.unit}{what}"
        what = f" ({m.meaning})" if m.meaning else ""
        return f"{m.metric} {self.delta:+.4f} ≈ {amount} {m.unit}{what}"


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:+,.0f}"
    return f"{value:+,.1f}"


def value_change(
    mapping: ValueMapping,
    before: Mapping[str, float] | None,
    after: Mapping[str, float],
) -> ValueChange | None:
    """The change of ``mapping.metric`` from ``before`` to ``after`` (None if either lacks it)."""
    if before is None:
        return None
    old, new = before.get(mapping.metric), after.get(mapping.metric)
    if old is None or new is None or not math.isfinite(old) or not math.isfinite(new):
        return None
    return ValueChange(mapping, float(old), float(new))
