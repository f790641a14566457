"""Round records and ledger protocols: what a round reports and what the engine persists."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from clawfed.aggregation.contribution import ContributionRecord
from clawfed.aggregation.round_details import RoundDetails
from clawfed.coordinator.phases import weighted_mean
from clawfed.core import Weights


@dataclass(frozen=True)
class Participant:
    """A node whose update entered the aggregate."""

    node_id: str
    department: str
    num_samples: int
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class Exclusion:
    """A node that was asked but is not in the aggregate, and why."""

    node_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class RoundReport:
    """What happened in one attempt at one round."""

    job_id: str
    round_no: int
    attempt: int
    started_at: datetime
    finished_at: datetime
    participants: tuple[Participant, ...]
    dropped: tuple[Exclusion, ...]
    rejected: tuple[Exclusion, ...]
    bytes_down: int
    bytes_up: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    details: RoundDetails | None = None  # weights, free riders, contributions, anomaly

    @property
    def duration_s(self) -> float:
        """Wall time of the attempt."""
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Progress:
    """Where a job stands according to the store."""

    rounds_done: int
    weights: Weights | None
    strategy_state: Mapping[str, Any]
    state_arrays: Weights | None = None
    prep: Mapping[str, Any] = field(default_factory=dict)


class JobLedger(Protocol):
    """What the engine persists; implemented over the SQL store and artifact folder."""

    def progress(self, job_id: str) -> Progress:
        """Rounds completed so far and the latest global weights (None before round 1)."""
        ...

    def save_initial(self, job_id: str, weights: Weights, source_node: str) -> None:
        """Keep the initial weights so a restart does not ask a node again."""
        ...

    def save_prep(self, job_id: str, prep: Mapping[str, Any]) -> None:
        """Keep what the phases before round 1 found (the pooled standardizer)."""
        ...

    def complete_round(
        self,
        report: RoundReport,
        weights: Weights,
        strategy_state: Mapping[str, Any],
        state_arrays: Weights | None = None,
    ) -> str:
        """Atomically record a completed round and its new version; return the version id.

        ``state_arrays`` are model-sized strategy state (server optimizer moments).
        """
        ...

    def record_failed_attempt(
        self, report: RoundReport, reason: str, *, final: bool = False
    ) -> None:
        """Record an attempt that did not reach min_nodes; ``final`` when no retry follows."""
        ...


@runtime_checkable
class ContributionHistory(Protocol):
    """A ledger that also keeps per-department contributions (``SqlLedger`` does)."""

    def contribution_records(self, job_id: str) -> list[ContributionRecord]:
        """Contributions of the job's completed rounds, round by round."""
        ...


EventSink = Callable[[str, Mapping[str, Any]], None]


def combine_metrics(parts: Sequence[Participant]) -> dict[str, float]:
    """Sample-weighted mean of each metric over the participants that report it."""
    return weighted_mean(
        {p.node_id: p.metrics for p in parts}, {p.node_id: p.num_samples for p in parts}
    )
