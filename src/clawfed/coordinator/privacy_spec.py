"""The ``privacy:`` section of a job file: secure aggregation, DP-FedAvg and DP-SGD settings.

::

    privacy:
      secure_aggregation:
        enabled: true
        variant: secagg          # or secagg_plus (Bell et al., CCS 2020)
        threshold: 3             # t, or threshold_fraction: 0.67 of the round's nodes
        neighbours: 8            # secagg_plus only; default 2·ceil(log2 n)
        clip: 1.0                # every coordinate is clipped to [-clip, clip]
        frac_bits: 16            # fixed-point scale 2^frac_bits
        max_weight: 100000       # largest sample count a node may weigh its update by
        ring_bits: 64            # 32 or 64; the smallest ring that cannot wrap by default
        phase_deadline_s: 60     # deadline of the phases after training
      dp:                        # client-level DP-FedAvg (McMahan et al., ICLR 2018)
        mode: central            # or distributed (each node adds its share of the noise)
        clip_norm: 1.0
        delta: 1.0e-5
        target_epsilon: 8.0      # and/or noise_multiplier: 1.1
      dp_sgd:                    # sample-level DP-SGD on each node (Abadi et al., CCS 2016)
        max_grad_norm: 1.0
        noise_multiplier: 1.0    # or target_epsilon: 4.0
        delta: 1.0e-5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clawfed.core import ConfigError
from clawfed.privacy.quantize import FixedPoint
from clawfed.privacy.secagg_config import secagg_plus_degree
from clawfed.privacy.secagg_wire import DPSGDKey

if TYPE_CHECKING:
    from clawfed.privacy.accountant import PrivacyBudget

#: Strategies whose server step works on the round's mean delta alone, so they compose with
#: secure aggregation; robust rules need every node's update, which secure aggregation hides.
SECURE_STRATEGIES: tuple[str, ...] = (
    "fedadagrad",
    "fedadam",
    "fedavg",
    "fedavgm",
    "fedprox",
    "fedyogi",
)


class NoiseMode(StrEnum):
    """Where DP noise is added (as ``privacy.dp.NoiseMode``, kept free of SciPy here)."""

    CENTRAL = "central"  # the coordinator adds N(0, σ²C²) to the unmasked sum
    DISTRIBUTED = "distributed"  # each node adds N(0, σ²C²/t) before masking


class Variant(StrEnum):
    """Complete-graph SecAgg or SecAgg+ with k-regular neighbourhoods."""

    SECAGG = "secagg"
    SECAGG_PLUS = "secagg_plus"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecureAggregationSpec(_Section):
    """Bonawitz et al. (CCS 2017) secure aggregation of the round's updates."""

    enabled: bool = True
    variant: Variant = Variant.SECAGG
    threshold: int | None = Field(default=None, ge=2)
    threshold_fraction: float | None = Field(default=None, gt=0.5, le=1.0)
    neighbours: int | None = Field(default=None, ge=2)
    clip: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    frac_bits: int = Field(default=16, ge=0, le=40)
    max_weight: int = Field(default=100_000, ge=1)
    ring_bits: int | None = None
    phase_deadline_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> SecureAggregationSpec:
        if self.threshold is not None and self.threshold_fraction is not None:
            raise ValueError(
                f"set threshold ({self.threshold}) or threshold_fraction "
                f"({self.threshold_fraction}), not both"
            )
        if self.ring_bits not in (None, 32, 64):
            raise ValueError(f"ring_bits must be 32 or 64, got {self.ring_bits}")
        if self.neighbours is not None:
            if self.variant is not Variant.SECAGG_PLUS:
                raise ValueError(
                    f"neighbours={self.neighbours} applies to variant secagg_plus only; "
                    "variant secagg masks with every other node"
                )
            if self.neighbours % 2:
                raise ValueError(f"neighbours must be even, got {self.neighbours}")
        return self

    def neighbours_for(self, nodes: int) -> int | None:
        """SecAgg+ degree for a round of ``nodes`` nodes; None means the complete graph."""
        if self.variant is Variant.SECAGG:
            return None
        k = self.neighbours if self.neighbours is not None else secagg_plus_degree(nodes)
        return None if k is None or k >= nodes - 1 else k

    def threshold_for(self, nodes: int) -> int:
        """t for a round of ``nodes`` nodes: a majority of each node's share holders.

        Raises
        ------
        ConfigError
            If a fixed ``threshold`` is larger than the holders of each node's shares.
        """
        k = self.neighbours_for(nodes)
        holders = nodes if k is None else k + 1
        if self.threshold is not None:
            if self.threshold > holders:
                where = "nodes in the round" if k is None else f"holders (neighbours {k} + 1)"
                raise ConfigError(
                    f"privacy.secure_aggregation.threshold={self.threshold} is more than the "
                    f"{holders} {where}; lower the threshold or add nodes"
                )
            return max(self.threshold, holders // 2 + 1)
        fraction = self.threshold_fraction if self.threshold_fraction is not None else 2 / 3
        return min(holders, max(math.ceil(fraction * holders), holders // 2 + 1))

    def fixed_point(self, nodes: int, max_weight: int) -> FixedPoint:
        """The ring encoding for ``nodes`` nodes whose update weights are <= ``max_weight``."""
        if self.ring_bits is None:
            return FixedPoint.choose(
                clip=self.clip, frac_bits=self.frac_bits, max_weight=max_weight, max_clients=nodes
            )
        return FixedPoint(self.clip, self.frac_bits, max_weight, nodes, self.ring_bits)


class DPSpec(_Section):
    """Client-level DP-FedAvg: each node's delta clipped to ``clip_norm``, Gaussian noise."""

    mode: NoiseMode = NoiseMode.CENTRAL
    clip_norm: float = Field(gt=0, allow_inf_nan=False)
    delta: float = Field(default=1e-5, gt=0, lt=1)
    target_epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    noise_multiplier: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> DPSpec:
        if self.target_epsilon is None and self.noise_multiplier is None:
            raise ValueError(
                "set target_epsilon (with delta) to calibrate the noise, or noise_multiplier"
            )
        return self

    def sigma(self, rounds: int) -> float:
        """The noise multiplier: given, or the smallest one whose ``rounds`` fit the target."""
        if self.noise_multiplier is not None:
            return self.noise_multiplier
        assert self.target_epsilon is not None
        from clawfed.privacy.accountant import calibrate_noise  # dp_accounting loads SciPy

        return calibrate_noise(self.target_epsilon, self.delta, rounds)

    def budget(self, rounds: int) -> PrivacyBudget | None:
        """The (ε, δ) budget that stops the job, or None when no target was set."""
        if self.target_epsilon is None:
            return None
        from clawfed.privacy.accountant import PrivacyBudget

        return PrivacyBudget(self.target_epsilon, self.delta, self.sigma(rounds))

    def spent(self, rounds: int, rounds_done: int) -> float:
        """ε spent after ``rounds_done`` released rounds of a job of ``rounds`` rounds."""
        from clawfed.privacy.accountant import epsilon_spent

        return epsilon_spent(self.sigma(rounds), self.delta, rounds_done)

    def facts(self, rounds: int, rounds_done: int) -> dict[str, float]:
        """What a version records: ``privacy.epsilon`` spent so far, δ, σ, C (and the target)."""
        out = {
            "privacy.epsilon": self.spent(rounds, rounds_done),
            "privacy.delta": self.delta,
            "privacy.noise_multiplier": self.sigma(rounds),
            "privacy.clip_norm": self.clip_norm,
        }
        if self.target_epsilon is not None:
            out["privacy.target_epsilon"] = self.target_epsilon
        return out


class DPSGDSpec(_Section):
    """Sample-level DP-SGD on every node through Opacus."""

    max_grad_norm: float = Field(gt=0, allow_inf_nan=False)
    noise_multiplier: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    target_epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    delta: float = Field(default=1e-5, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> DPSGDSpec:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("set exactly one of noise_multiplier or target_epsilon")
        return self

    def task_config(self, rounds: int) -> dict[str, float | int]:
        """The ``dpsgd.*`` keys every fit task carries (``privacy.dpsgd_task`` reads them)."""
        out: dict[str, float | int] = {
            DPSGDKey.MAX_GRAD_NORM.value: self.max_grad_norm,
            DPSGDKey.DELTA.value: self.delta,
            DPSGDKey.ROUNDS.value: rounds,
        }
        if self.noise_multiplier is not None:
            out[DPSGDKey.NOISE_MULTIPLIER.value] = self.noise_multiplier
        if self.target_epsilon is not None:
            out[DPSGDKey.TARGET_EPSILON.value] = self.target_epsilon
        return out


class PrivacySpec(_Section):
    """The job's privacy section; every part optional."""

    secure_aggregation: SecureAggregationSpec | None = None
    dp: DPSpec | None = None
    dp_sgd: DPSGDSpec | None = None

    @property
    def secure(self) -> bool:
        """Whether rounds run the secure-aggregation protocol."""
        sa = self.secure_aggregation
        return sa is not None and sa.enabled

    @property
    def private_rounds(self) -> bool:
        """Whether rounds go through ``secure_round`` (secure aggregation and/or DP-FedAvg)."""
        return self.secure or self.dp is not None

    def check_job(self, participants: Sequence[str] | None, min_nodes: int, strategy: str) -> None:
        """Refuse settings that cannot work with the rest of the job (names rule and value).

        Raises
        ------
        ValueError
            Raised inside pydantic validation, which reports it as a ``ConfigError``.
        """
        sa = self.secure_aggregation if self.secure else None
        if self.private_rounds and strategy not in SECURE_STRATEGIES:
            what = "secure aggregation" if sa is not None else "DP-FedAvg"
            raise ValueError(
                f"privacy: strategy {strategy!r} needs each node's individual update, which {what} "
                f"does not provide; use one of {', '.join(SECURE_STRATEGIES)}"
            )
        if self.dp is not None and self.dp.mode is NoiseMode.DISTRIBUTED and sa is None:
            raise ValueError(
                "privacy.dp.mode distributed needs secure_aggregation enabled: each node's "
                "share of the noise is too small to protect its update on its own"
            )
        if sa is None:
            return
        if participants is not None:
            n = len(participants)
            if n < 2:
                raise ValueError(
                    f"privacy.secure_aggregation needs at least 2 participants, got {n}"
                )
            if sa.threshold is not None:
                k = sa.neighbours_for(n)
                holders = n if k is None else k + 1
                if sa.threshold > holders:
                    raise ValueError(
                        f"privacy.secure_aggregation.threshold={sa.threshold} is more than the "
                        f"{holders} {'participants' if k is None else 'share holders per node'}"
                        " listed; lower the threshold or list more participants"
                    )
                if sa.threshold <= holders // 2:
                    raise ValueError(
                        f"privacy.secure_aggregation.threshold={sa.threshold} must be more "
                        f"than half of the {holders} holders of each node's shares (at least "
                        f"{holders // 2 + 1})"
                    )
        if min_nodes < 2:
            raise ValueError(
                f"privacy.secure_aggregation needs min_nodes >= 2 (a sum of one update is that "
                f"update), got min_nodes={min_nodes}"
            )
        if self.dp is not None and self.dp.clip_norm > sa.clip:
            raise ValueError(
                f"privacy.secure_aggregation.clip={sa.clip:g} is below "
                f"privacy.dp.clip_norm={self.dp.clip_norm:g}; "
                "a clipped delta's coordinates reach ±clip_norm, so raise clip to at least "
                "clip_norm (plus room for distributed noise)"
            )
