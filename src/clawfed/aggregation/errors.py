"""Errors raised while aggregating a round."""

from __future__ import annotations

from clawfed.core import JobError


class TooFewUpdates(JobError):
    """A rule needs more updates than the round delivered.

    ``rule`` names the aggregation rule, ``needed`` the minimum number of updates and
    ``got`` how many arrived; the coordinator may wait for more nodes or fail the round.
    """

    def __init__(self, rule: str, needed: int, got: int, why: str) -> None:
        super().__init__(f"{rule} needs at least {needed} update(s), got {got}: {why}")
        self.rule = rule
        self.needed = needed
        self.got = got
