"""Records of training rounds: what a finished round reports, how an attempt is stored, and
the per-department contribution ledger (weights, LOO and Shapley values, free-rider flags)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from clawfed.core.errors import NotFoundError, StoreError
from clawfed.governance._common import (
    json_object,
    metric_map,
    now_utc,
    require_count,
    require_text,
    utc,
)
from clawfed.governance.db import Database
from clawfed.governance.registry import (
    Participant,
    check_participants,
    department_metric_map,
    participants_from_json,
)
from clawfed.governance.tables import ContributionRow, JobRow, RoundDetailRow, RoundRow


class RoundStatus(StrEnum):
    """State of one attempt at a round."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRIED = "retried"


@dataclass(frozen=True)
class DroppedNode:
    """A node that was asked to train but gave no answer (timeout, disconnect…)."""

    node_id: str
    reason: str

    def __post_init__(self) -> None:
        require_text(self.node_id, "dropped node_id", 128)
        require_text(self.reason, f"dropped node {self.node_id}: reason", 500)


@dataclass(frozen=True)
class RejectedNode:
    """A node whose update was refused; ``reason`` is machine-readable (a ``RejectReason``)."""

    node_id: str
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        require_text(self.node_id, "rejected node_id", 128)
        require_text(str(self.reason), f"rejected node {self.node_id}: reason", 64)
        if not isinstance(self.detail, str):
            raise StoreError(f"rejected node {self.node_id}: detail must be a string")
        object.__setattr__(self, "reason", str(self.reason))


def _empty_metrics() -> Mapping[str, float]:
    return MappingProxyType({})


def _empty_department_metrics() -> Mapping[str, Mapping[str, float]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class RoundOutcome:
    """What the round engine reports when a round produced a new global model."""

    round_no: int
    started_at: datetime
    finished_at: datetime
    participants: Sequence[Participant]
    metrics: Mapping[str, float] = field(default_factory=_empty_metrics)
    department_metrics: Mapping[str, Mapping[str, float]] = field(
        default_factory=_empty_department_metrics
    )
    dropped: Sequence[DroppedNode] = ()
    rejected: Sequence[RejectedNode] = ()
    bytes_down: int = 0
    bytes_up: int = 0

    def __post_init__(self) -> None:
        where = f"round {self.round_no}"
        require_count(self.round_no, "round_no", minimum=1)
        start = utc(self.started_at, f"{where}: started_at")
        end = utc(self.finished_at, f"{where}: finished_at")
        if end < start:
            raise StoreError(
                f"{where}: finished_at ({end.isoformat()}) is before started_at "
                f"({start.isoformat()})"
            )
        people = check_participants(self.participants, where)
        if not people:
            raise StoreError(f"{where}: a completed round needs at least one participant")
        require_count(self.bytes_down, f"{where}: bytes_down")
        require_count(self.bytes_up, f"{where}: bytes_up")
        dropped = _typed(self.dropped, DroppedNode, f"{where}: dropped")
        rejected = _typed(self.rejected, RejectedNode, f"{where}: rejected")
        metrics = MappingProxyType(metric_map(self.metrics, f"{where} metrics"))
        per_dept = department_metric_map(self.department_metrics, f"{where} department metrics")
        for name, value in (
            ("started_at", start),
            ("finished_at", end),
            ("participants", people),
            ("dropped", dropped),
            ("rejected", rejected),
            ("metrics", metrics),
            ("department_metrics", MappingProxyType(per_dept)),
        ):
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class RoundRecord:
    """One stored attempt at a round of a job."""

    job_id: str
    round_no: int
    attempt: int
    status: RoundStatus
    started_at: datetime
    finished_at: datetime | None
    participants: tuple[Participant, ...]
    dropped: tuple[DroppedNode, ...]
    rejected: tuple[RejectedNode, ...]
    metrics: Mapping[str, float]
    bytes_down: int
    bytes_up: int
    message: str
    version_id: str | None


def _typed(items: Sequence[Any], kind: type[Any], what: str) -> tuple[Any, ...]:
    out = tuple(items)
    for item in out:
        if not isinstance(item, kind):
            raise StoreError(f"{what} must hold {kind.__name__}, got {type(item).__name__}")
    return out


def dropped_to_json(items: Sequence[DroppedNode]) -> list[dict[str, str]]:
    """Dropped nodes as JSON objects ``{node_id, reason}``."""
    return [
        {"node_id": d.node_id, "reason": d.reason} for d in _typed(items, DroppedNode, "dropped")
    ]


def rejected_to_json(items: Sequence[RejectedNode]) -> list[dict[str, str]]:
    """Rejected nodes as JSON objects ``{node_id, reason, detail}``."""
    return [
        {"node_id": r.node_id, "reason": r.reason, "detail": r.detail}
        for r in _typed(items, RejectedNode, "rejected")
    ]


def dropped_from_json(data: Any, where: str) -> tuple[DroppedNode, ...]:
    """Dropped nodes read back from a JSON column."""
    try:
        return tuple(DroppedNode(str(d["node_id"]), str(d["reason"])) for d in data)
    except (KeyError, TypeError, StoreError) as exc:
        raise StoreError(f"{where}: stored dropped nodes are malformed: {exc!r}") from exc


def rejected_from_json(data: Any, where: str) -> tuple[RejectedNode, ...]:
    """Rejected nodes read back from a JSON column."""
    try:
        return tuple(
            RejectedNode(str(d["node_id"]), str(d["reason"]), str(d.get("detail", "")))
            for d in data
        )
    except (KeyError, TypeError, AttributeError, StoreError) as exc:
        raise StoreError(f"{where}: stored rejected nodes are malformed: {exc!r}") from exc


def running_attempts(job_id: str, round_no: int | None = None) -> Select[RoundRow]:
    """A query for the attempts of ``job_id`` (at ``round_no`` if given) still running."""
    stmt = select(RoundRow).where(
        RoundRow.job_id == job_id, RoundRow.status == RoundStatus.RUNNING.value
    )
    return stmt if round_no is None else stmt.where(RoundRow.round_no == round_no)


def new_attempt(s: Session, job_id: str, round_no: int, started_at: datetime) -> RoundRow:
    """A new running attempt row at ``round_no``, numbered after the existing ones."""
    last = s.scalar(
        select(func.max(RoundRow.attempt)).where(
            RoundRow.job_id == job_id, RoundRow.round_no == round_no
        )
    )
    return RoundRow(
        job_id=job_id, round_no=round_no, attempt=(last or 0) + 1,
        status=RoundStatus.RUNNING.value, started_at=started_at, finished_at=None,
        participants=[], dropped=[], rejected=[], metrics={}, bytes_down=0, bytes_up=0,
        message="", version_id=None,
    )  # fmt: skip


def round_record(row: RoundRow) -> RoundRecord:
    """The frozen record of a stored attempt."""
    where = f"round {row.round_no} attempt {row.attempt} of job {row.job_id!r}"
    return RoundRecord(
        job_id=row.job_id, round_no=row.round_no, attempt=row.attempt,
        status=RoundStatus(row.status), started_at=row.started_at,
        finished_at=row.finished_at, participants=participants_from_json(row.participants, where),
        dropped=dropped_from_json(row.dropped, where),
        rejected=rejected_from_json(row.rejected, where),
        metrics=MappingProxyType(dict(row.metrics)), bytes_down=row.bytes_down,
        bytes_up=row.bytes_up, message=row.message, version_id=row.version_id,
    )  # fmt: skip


# ---- the contribution ledger ------------------------------------------------------------


def _finite(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StoreError(f"{what} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ContributionEntry:
    """One department's weight and contribution in one round of a job.

    ``weight`` is what its update counted (0 when excluded), ``share`` its fraction of the
    round's total, ``action`` what was done with it (kept, downweighted, rejected),
    ``free_rider`` the kind it was flagged as (None: not flagged), ``loo`` and ``shapley``
    its contributions (None when not measured that round).
    """

    round_no: int
    node_id: str
    department: str
    num_samples: int
    weight: float
    share: float
    action: str
    free_rider: str | None = None
    loo: float | None = None
    shapley: float | None = None

    def __post_init__(self) -> None:
        where = f"contribution of {self.node_id!r} in round {self.round_no}"
        require_count(self.round_no, f"{where}: round_no", minimum=1)
        require_text(self.node_id, f"{where}: node_id", 128)
        require_text(self.department, f"{where}: department", 128)
        require_count(self.num_samples, f"{where}: num_samples")
        require_text(self.action, f"{where}: action", 16)
        if self.free_rider is not None:
            require_text(self.free_rider, f"{where}: free_rider", 32)
        for name in ("weight", "share", "loo", "shapley"):
            value = _finite(getattr(self, name), f"{where}: {name}")
            object.__setattr__(self, name, value)
        if self.weight < 0 or not 0.0 <= self.share <= 1.0 + 1e-9:
            raise StoreError(
                f"{where}: weight must be >= 0 and share in [0, 1], "
                f"got {self.weight} and {self.share}"
            )


@dataclass(frozen=True)
class DepartmentContribution:
    """A department's contributions summed over a job's completed rounds."""

    department: str
    rounds: int
    measured_rounds: int
    total_loo: float
    total_shapley: float
    mean_share: float
    flagged_rounds: int
    excluded_rounds: int


class ContributionStore:
    """Per-round aggregation details and the per-department contribution ledger of jobs.

    ``record_round`` may be called before the round is completed (and again for a retried
    attempt: it replaces what was there); readers only see rounds the job has completed.
    """

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = now_utc) -> None:
        self._db = db
        self._clock = clock

    def record_round(
        self,
        job_id: str,
        round_no: int,
        details: Mapping[str, Any],
        entries: Sequence[ContributionEntry],
    ) -> None:
        """Store one round's details and entries, replacing any earlier record of that round."""
        require_count(round_no, "round_no", minimum=1)
        body = json_object(details, f"round {round_no} details")
        rows = _typed(entries, ContributionEntry, f"round {round_no} contributions")
        seen = [e.node_id for e in rows]
        if len(set(seen)) != len(seen) or any(e.round_no != round_no for e in rows):
            raise StoreError(f"round {round_no}: one entry per node, all of round {round_no}")
        at = utc(self._clock(), "clock time")
        with self._db.session() as s:
            if s.get(JobRow, job_id) is None:
                raise NotFoundError(f"job {job_id!r} does not exist")
            key = (ContributionRow.job_id == job_id, ContributionRow.round_no == round_no)
            s.execute(delete(ContributionRow).where(*key))
            s.execute(
                delete(RoundDetailRow).where(
                    RoundDetailRow.job_id == job_id, RoundDetailRow.round_no == round_no
                )
            )
            s.add(RoundDetailRow(job_id=job_id, round_no=round_no, details=body, recorded_at=at))
            for e in rows:
                s.add(
                    ContributionRow(
                        job_id=job_id, round_no=round_no, node_id=e.node_id,
                        department=e.department, num_samples=e.num_samples, weight=e.weight,
                        share=e.share, action=e.action, free_rider=e.free_rider, loo=e.loo,
                        shapley=e.shapley, recorded_at=at,
                    )
                )  # fmt: skip

    def _done(self, s: Session, job_id: str) -> int:
        job = s.get(JobRow, job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r} does not exist")
        return job.rounds_done

    def entries(self, job_id: str) -> list[ContributionEntry]:
        """Every entry of the job's completed rounds, by round then node."""
        with self._db.session() as s:
            done = self._done(s, job_id)
            stmt = (
                select(ContributionRow)
                .where(ContributionRow.job_id == job_id, ContributionRow.round_no <= done)
                .order_by(ContributionRow.round_no, ContributionRow.node_id)
            )
            return [
                ContributionEntry(
                    r.round_no, r.node_id, r.department, r.num_samples, r.weight, r.share,
                    r.action, r.free_rider, r.loo, r.shapley,
                )
                for r in s.scalars(stmt)
            ]  # fmt: skip

    def details(self, job_id: str, round_no: int) -> dict[str, Any]:
        """The stored details of a completed round.

        Raises
        ------
        NotFoundError
            If the job does not exist or the round has no completed record.
        """
        with self._db.session() as s:
            done = self._done(s, job_id)
            row = s.get(RoundDetailRow, (job_id, round_no))
            if row is None or round_no > done:
                raise NotFoundError(f"job {job_id!r} has no aggregation record of round {round_no}")
            return dict(row.details)

    def summary(self, job_id: str) -> list[DepartmentContribution]:
        """Per department: rounds taken part in, summed LOO and Shapley, mean weight share."""
        by_dept: dict[str, list[ContributionEntry]] = {}
        for e in self.entries(job_id):
            by_dept.setdefault(e.department, []).append(e)
        out = []
        for dept in sorted(by_dept):
            es = by_dept[dept]
            measured = [e for e in es if e.shapley is not None]
            out.append(
                DepartmentContribution(
                    department=dept,
                    rounds=len({e.round_no for e in es}),
                    measured_rounds=len({e.round_no for e in measured}),
                    total_loo=sum(e.loo or 0.0 for e in measured),
                    total_shapley=sum(e.shapley or 0.0 for e in measured),
                    mean_share=sum(e.share for e in es) / len(es),
                    flagged_rounds=sum(1 for e in es if e.free_rider is not None),
                    excluded_rounds=sum(1 for e in es if e.action == "rejected"),
                )
            )
        return out
