"""Errors of the privacy package: secure-aggregation failures and an exhausted privacy budget.

::

    ClawfedError
     ├── SecurityError
     │    └── ShamirError       shares are malformed or do not lie on one polynomial
     └── JobError
          ├── SecAggError       a secure-aggregation round failed (carries a SecAggFailure)
          └── BudgetExceeded    the next round would spend more ε than the job allows
"""

from __future__ import annotations

from enum import StrEnum

from clawfed.core import JobError, SecurityError


class ShamirError(SecurityError):
    """Shares are malformed (bad coordinates, too few) or do not lie on one polynomial."""


class SecAggFailure(StrEnum):
    """Why a secure-aggregation round, or one client's message in it, was refused."""

    TOO_FEW_CLIENTS = "too_few_clients"
    INCONSISTENT_SHARE = "inconsistent_share"
    BAD_MESSAGE = "bad_message"
    WRONG_PHASE = "wrong_phase"
    WRAP_AROUND = "wrap_around"


class SecAggError(JobError):
    """A secure-aggregation step failed; ``reason`` says why, ``node_id`` names the culprit.

    Raised by ``receive_*`` methods for one client's message (the coordinator then treats
    that client as dropped) and by ``close_*`` / ``finish`` for the whole round.
    """

    def __init__(self, reason: SecAggFailure, detail: str, *, node_id: str | None = None) -> None:
        who = f" [client {node_id}]" if node_id is not None else ""
        super().__init__(f"secure aggregation failed ({reason}){who}: {detail}")
        self.reason = reason
        self.detail = detail
        self.node_id = node_id


class BudgetExceeded(JobError):
    """Running the next round would spend more privacy (ε) than the job's target allows."""

    def __init__(
        self, *, next_round: int, would_spend: float, target_epsilon: float, delta: float
    ) -> None:
        super().__init__(
            f"privacy budget exhausted: round {next_round} would spend ε={would_spend:.4g} "
            f"(δ={delta:g}), above the job's target ε={target_epsilon:g}; the job stops "
            f"after round {next_round - 1} (raise the target, the noise multiplier, or "
            "lower the number of rounds)"
        )
        self.next_round = next_round
        self.would_spend = would_spend
        self.target_epsilon = target_epsilon
        self.delta = delta
