"""The aggregation sections of a job file: weighting, contribution, free riders, anomalies.

Each section is a frozen pydantic model that refuses unknown names, NaN and out-of-range
values, and turns into the settings object of the library module that does the work::

    weighting:      {samples: 1.0, quality: 1.0, contribution: 0.5, min_factor: 0.1, ...}
    contribution:   {metric: accuracy, validators: [audit-node], every: 1, max_evaluations: 32}
    free_riders:    exclude            # or {policy: downweight, downweight_factor: 0.2, ...}
    anomaly:        {metric: accuracy, threshold: 0.02}
"""

from __future__ import annotations

import re
from collections.abc import Collection
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clawfed.aggregation.anomaly import AnomalySettings
from clawfed.aggregation.contribution import ShapleySettings
from clawfed.aggregation.free_riders import FreeRiderPolicy
from clawfed.aggregation.quality_weighted import WeightFormula

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Metric names whose smaller values are better (when ``higher_is_better`` is not given).
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse")


def lower_is_better(metric: str) -> bool:
    """Whether ``metric`` reads like a loss or an error (smaller is better)."""
    name = metric.lower()
    return any(part in name for part in _LOWER_IS_BETTER)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class WeightingOptions(_Section):
    """``weight = min(n, max_samples)^samples · clip(q^quality · (1 + contribution·h), …)``.

    ``n`` is the update's sample count capped by the rows the node registered for the job's
    dataset, ``q`` the data-quality score of its dataset profile (``default_quality`` when
    the node sent none), ``h`` its contribution history (``ContributionLedger.history`` with
    ``history_decay``); the multiplier of the sample term is clipped to
    ``[min_factor, max_factor]``.
    """

    samples: float = Field(default=1.0, ge=0.0, le=4.0)
    quality: float = Field(default=1.0, ge=0.0, le=16.0)
    contribution: float = Field(default=0.5, ge=0.0, le=100.0)
    min_factor: float = Field(default=0.1, ge=0.0)
    max_factor: float = Field(default=10.0, gt=0.0)
    max_samples: int | None = Field(default=None, ge=1)
    default_quality: float = Field(default=1.0, ge=0.0, le=1.0)
    history_decay: float = Field(default=0.8, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds(self) -> WeightingOptions:
        if self.min_factor > self.max_factor:
            raise ValueError(
                f"min_factor ({self.min_factor}) must be <= max_factor ({self.max_factor})"
            )
        return self

    def formula(self) -> WeightFormula:
        """The weight formula these options describe."""
        return WeightFormula(
            sample_exponent=self.samples,
            quality_exponent=self.quality,
            contribution_coef=self.contribution,
            min_factor=self.min_factor,
            max_factor=self.max_factor,
            max_samples=self.max_samples,
            default_quality=self.default_quality,
        )


class ContributionOptions(_Section):
    """Per-round leave-one-out and Shapley values, measured on a validation set.

    The validation set is the holdout of the job's dataset (or ``dataset``) on the
    ``validators`` nodes (default: the round's participants). Candidate models (the
    previous global model plus the weighted mean of a subset of the round's updates) are
    sent to those nodes as EVALUATE tasks, and only their metrics come back: no row ever
    leaves a node. ``metric`` is the holdout metric used as utility; ``every`` computes it
    every n-th round (and the last); ``max_evaluations`` bounds the candidate models per
    round (exact Shapley when all ``2^n`` subsets fit, GTG-Shapley otherwise).
    """

    metric: str = Field(default="accuracy", min_length=1, max_length=64)
    higher_is_better: bool | None = None
    validators: tuple[str, ...] | None = None
    dataset: str | None = None
    every: int = Field(default=1, ge=1)
    max_evaluations: int = Field(default=32, ge=3, le=4096)
    max_permutations: int = Field(default=100, ge=1, le=100_000)
    round_tolerance: float = Field(default=1e-4, ge=0.0)
    within_tolerance: float = Field(default=1e-3, ge=0.0)
    seed: int = Field(default=0, ge=0)

    @field_validator("validators")
    @classmethod
    def _validators(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("must name at least one node, each once (or be left out)")
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError(
                f"must be a dataset name (letters, digits, '_', '.', '-'), got {value!r}"
            )
        return value

    def better_high(self) -> bool:
        """Whether a higher ``metric`` is better (given, or guessed from its name)."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        return not lower_is_better(self.metric)

    def shapley(self, round_no: int) -> ShapleySettings:
        """Budget and truncation of the round's Shapley estimate (seed varied by round)."""
        return ShapleySettings(
            max_evaluations=self.max_evaluations,
            max_permutations=self.max_permutations,
            round_tolerance=self.round_tolerance,
            within_tolerance=self.within_tolerance,
            seed=self.seed + round_no,
        )


class AnomalyOptions(_Section):
    """When a round's combined ``metric`` worsens by more than ``threshold``, name suspects.

    Attribution runs in jobs that have an ``anomaly`` section (it sketches every update).
    Suspects are the departments whose update deviates most (cosine and norm) from the
    round's robust reference (coordinate-wise median of the update sketches).
    """

    metric: str = Field(default="accuracy", min_length=1, max_length=64)
    higher_is_better: bool | None = None
    threshold: float = Field(default=0.02, ge=0.0)
    outlier_z: float = Field(default=3.5, gt=0.0)
    max_suspects: int = Field(default=3, ge=1, le=100)

    def settings(self) -> AnomalySettings:
        """The library settings these options describe."""
        high = (
            self.higher_is_better
            if self.higher_is_better is not None
            else not lower_is_better(self.metric)
        )
        return AnomalySettings(
            metric=self.metric,
            higher_is_better=high,
            threshold=self.threshold,
            outlier_z=self.outlier_z,
            max_suspects=self.max_suspects,
        )


def policy_shorthand(value: Any) -> Any:
    """``free_riders: exclude`` means ``free_riders: {policy: exclude}``."""
    return {"policy": value} if isinstance(value, str) else value


#: Strategies whose rule ignores sample counts: a weight cannot reach them.
UNWEIGHTED_STRATEGIES = frozenset({"median", "trimmed_mean", "krum", "multi_krum"})
#: Sections that need each node's individual update (not a secure or noised sum).
_PER_UPDATE = ("weighting", "contribution", "free_riders", "compression", "anomaly")


class JobMode(StrEnum):
    """``sync``: rounds wait for every asked node (until the deadline); ``async``: FedBuff."""

    SYNC = "sync"
    ASYNC = "async"


def check_sections(
    *,
    strategy: str,
    mode: JobMode,
    present: Collection[str],
    policy: FreeRiderPolicy | None,
    private_rounds: bool,
    requires_approval: bool,
) -> None:
    """Refuse aggregation sections that cannot work with the rest of a job file.

    ``present`` names the job's sections that are set (``weighting``, ``free_riders``…).

    Raises
    ------
    ValueError
        Naming the combination and what to use instead.
    """
    if "weighting" in present and strategy in UNWEIGHTED_STRATEGIES | {"quality_weighted"}:
        why = (
            "its rule ignores sample counts, so a weight cannot reach it"
            if strategy != "quality_weighted"
            else "it weighs by its own settings; put the formula in one place"
        )
        raise ValueError(f"weighting cannot be used with strategy {strategy!r}: {why}")
    if policy is FreeRiderPolicy.DOWNWEIGHT and strategy == "quality_weighted":
        raise ValueError(
            "free_riders policy downweight cannot be combined with strategy "
            "'quality_weighted'; use strategy fedavg with a `weighting` section instead"
        )
    if policy is FreeRiderPolicy.DOWNWEIGHT and strategy in UNWEIGHTED_STRATEGIES:
        raise ValueError(
            f"free_riders policy downweight has no effect with strategy {strategy!r} "
            "(its rule ignores sample counts); use policy exclude"
        )
    per_update = [s for s in _PER_UPDATE if s in present]
    if private_rounds and per_update:
        raise ValueError(
            f"privacy: {', '.join(per_update)} need(s) each node's individual update, "
            "which secure aggregation and DP-FedAvg rounds do not provide"
        )
    if mode is JobMode.ASYNC:
        unsupported = [f"strategy {strategy!r}"] if strategy not in ("fedavg", "fedprox") else []
        unsupported += [
            s for s in ("weighting", "contribution", "free_riders", "privacy") if s in present
        ]
        if requires_approval:
            unsupported.append("requires_approval")
        if unsupported:
            raise ValueError(
                "mode async aggregates with FedBuff (settings under `fedbuff`) and does not "
                f"support {', '.join(unsupported)}: use mode sync for those"
            )
    elif "fedbuff" in present:
        raise ValueError("fedbuff settings need `mode: async`")
