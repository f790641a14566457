"""Records of training rounds: what a finished round reports and how an attempt is stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from clawfed.core.errors import StoreError
from clawfed.governance._common import metric_map, require_count, require_text, utc
from clawfed.governance.registry import (
    Participant,
    check_participants,
    department_metric_map,
    participants_from_json,
)
from clawfed.governance.tables import RoundRow


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
