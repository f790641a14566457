"""``JobStore``: training jobs, their rounds and the strategy state they carry across restarts."""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from clawfed.core.errors import NotFoundError, StoreError
from clawfed.governance._common import json_object, now_utc, require_count, require_text, utc
from clawfed.governance.artifacts import Artifact
from clawfed.governance.db import Database
from clawfed.governance.registry import (
    ModelRegistry,
    ModelVersion,
    StrategyInfo,
    participants_to_json,
)
from clawfed.governance.rounds import (
    DroppedNode,
    RejectedNode,
    RoundOutcome,
    RoundRecord,
    RoundStatus,
    dropped_to_json,
    new_attempt,
    rejected_to_json,
    round_record,
    running_attempts,
)
from clawfed.governance.tables import JobRow, RoundRow

#: Job names become version ids (``<name>@v<N>``), so they hold no spaces, ``@`` or slashes.
_JOB_NAME = re.compile(r"[^\s@/\\]{1,64}")


class JobStatus(StrEnum):
    """Lifecycle of a job; completed, failed and cancelled are final."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
_NEXT: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset(
        {JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.RUNNING: frozenset({JobStatus.RUNNING} | _FINAL),
}


def job_status(value: object) -> JobStatus:
    """``value`` as a ``JobStatus``; anything else is a ``StoreError`` listing the choices."""
    if isinstance(value, str) and value in JobStatus.__members__.values():
        return JobStatus(value)
    choices = ", ".join(s.value for s in JobStatus)
    raise StoreError(f"job status must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class JobRecord:
    """A job as stored; ``strategy_state`` is what ``Strategy.state_dict`` last returned."""

    job_id: str
    name: str
    spec_yaml: str
    status: JobStatus
    rounds_total: int
    rounds_done: int
    message: str
    strategy_state: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CompletedRound:
    """The stored round and the model version it produced."""

    round: RoundRecord
    version: ModelVersion


class JobStore:
    """Create and track jobs and record their rounds; a round completes in one transaction."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = now_utc) -> None:
        self._db = db
        self._clock = clock
        self._registry = ModelRegistry(db)

    def create(
        self,
        job_id: str,
        name: str,
        spec_yaml: str,
        rounds_total: int,
        *,
        strategy_state: Mapping[str, Any] | None = None,
    ) -> JobRecord:
        """Store a new pending job; ``job_id`` and ``name`` must both be unused."""
        require_text(job_id, "job_id", 128)
        if not isinstance(name, str) or not _JOB_NAME.fullmatch(name):
            raise StoreError(
                f"job name must be 1-64 characters without whitespace, '@' or slashes, got {name!r}"
            )
        if not isinstance(spec_yaml, str):
            raise StoreError(f"spec_yaml must be a string, got {type(spec_yaml).__name__}")
        require_count(rounds_total, "rounds_total", minimum=1)
        state = json_object(strategy_state or {}, "strategy_state")
        now = utc(self._clock(), "clock time")
        with self._db.session() as s:
            if s.get(JobRow, job_id) is not None:
                raise StoreError(f"job {job_id!r} already exists")
            taken = s.scalar(select(JobRow.job_id).where(JobRow.name == name))
            if taken is not None:
                raise StoreError(f"job name {name!r} is already used by job {taken!r}")
            row = JobRow(
                job_id=job_id, name=name, spec_yaml=spec_yaml, status=JobStatus.PENDING.value,
                rounds_total=rounds_total, rounds_done=0, message="", strategy_state=state,
                created_at=now, updated_at=now,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return _job(row)

    def get(self, job_id: str) -> JobRecord:
        """The job ``job_id``; ``NotFoundError`` if it does not exist."""
        with self._db.session() as s:
            return _job(_require_job(s, job_id))

    def list(self, status: JobStatus | None = None) -> builtins.list[JobRecord]:
        """Every job (with ``status`` if given), oldest first."""
        stmt = select(JobRow).order_by(JobRow.created_at, JobRow.job_id)
        if status is not None:
            stmt = stmt.where(JobRow.status == job_status(status).value)
        with self._db.session() as s:
            return [_job(r) for r in s.scalars(stmt)]

    def resumable_jobs(self) -> builtins.list[JobRecord]:
        """Jobs left running (e.g. by a coordinator that stopped); resume them on start."""
        return self.list(JobStatus.RUNNING)

    def set_status(self, job_id: str, status: JobStatus, message: str = "") -> JobRecord:
        """Move ``job_id`` to ``status``; final states cannot be left.

        When a job stops running, an attempt still marked running is recorded as failed.
        """
        target = job_status(status)
        if not isinstance(message, str) or len(message) > 2000:
            raise StoreError(
                f"status message must be a string of <= 2000 characters, got {message!r}"
            )
        now = utc(self._clock(), "clock time")
        with self._db.session() as s:
            row = _require_job(s, job_id, lock=True)
            current = job_status(row.status)
            if target not in _NEXT.get(current, frozenset()):
                raise StoreError(f"job {job_id!r} cannot go from {current} to {target}")
            if current is JobStatus.RUNNING and target is not JobStatus.RUNNING:
                for attempt in s.scalars(running_attempts(job_id)):
                    attempt.status = RoundStatus.FAILED.value
                    attempt.finished_at = now
                    attempt.message = f"job became {target}: {message}".rstrip(": ")
            row.status, row.message, row.updated_at = target.value, message, now
            s.flush()
            return _job(row)

    def start_round(
        self, job_id: str, round_no: int, *, started_at: datetime | None = None
    ) -> RoundRecord:
        """Record a new running attempt at round ``round_no`` (the job's next round)."""
        start = utc(started_at or self._clock(), "started_at")
        with self._db.session() as s:
            job = _require_running(s, job_id, round_no)
            running = s.scalar(running_attempts(job_id, round_no))
            if running is not None:
                raise StoreError(
                    f"round {round_no} of job {job_id!r} already has attempt {running.attempt} "
                    "running; fail or complete it first"
                )
            row = new_attempt(s, job.job_id, round_no, start)
            s.add(row)
            s.flush()
            return round_record(row)

    def fail_round(
        self,
        job_id: str,
        round_no: int,
        *,
        message: str,
        retry: bool,
        finished_at: datetime | None = None,
        dropped: Sequence[DroppedNode] = (),
        rejected: Sequence[RejectedNode] = (),
    ) -> RoundRecord:
        """End the running attempt at ``round_no`` as ``retried`` (another follows) or failed."""
        require_text(message, "failure message", 2000)
        end = utc(finished_at or self._clock(), "finished_at")
        with self._db.session() as s:
            _require_job(s, job_id, lock=True)
            row = s.scalar(running_attempts(job_id, round_no))
            if row is None:
                raise StoreError(f"round {round_no} of job {job_id!r} has no running attempt")
            row.status = (RoundStatus.RETRIED if retry else RoundStatus.FAILED).value
            row.finished_at, row.message = end, message
            row.dropped, row.rejected = dropped_to_json(dropped), rejected_to_json(rejected)
            s.flush()
            return round_record(row)

    def complete_round(
        self,
        job_id: str,
        outcome: RoundOutcome,
        *,
        artifact: Artifact,
        strategy: StrategyInfo,
        new_state: Mapping[str, Any],
    ) -> CompletedRound:
        """Record a finished round, all in one transaction or not at all.

        Stores the round as completed, bumps ``rounds_done``, saves ``new_state`` (the
        strategy's ``state_dict``) and registers the new model version, so a crash never
        leaves half a round. Completing a round twice is a ``StoreError``.
        """
        if not isinstance(outcome, RoundOutcome):
            raise StoreError(f"outcome must be a RoundOutcome, got {type(outcome).__name__}")
        state = json_object(new_state, "strategy state")
        n = outcome.round_no
        with self._db.session() as s:
            job = _require_running(s, job_id, n)
            job.rounds_done, job.strategy_state = n, state
            job.updated_at = utc(self._clock(), "clock time")
            s.flush()
            version = self._registry.register(
                s, job_id=job_id, round_no=n, artifact=artifact,
                participants=outcome.participants, strategy=strategy, metrics=outcome.metrics,
                department_metrics=outcome.department_metrics, created_at=outcome.finished_at,
            )  # fmt: skip
            row = s.scalar(running_attempts(job_id, n))
            if row is None:
                row = new_attempt(s, job_id, n, outcome.started_at)
                s.add(row)
            row.status, row.started_at = RoundStatus.COMPLETED.value, outcome.started_at
            row.finished_at, row.message = outcome.finished_at, ""
            row.participants = participants_to_json(outcome.participants)
            row.dropped = dropped_to_json(outcome.dropped)
            row.rejected = rejected_to_json(outcome.rejected)
            row.metrics = dict(outcome.metrics)
            row.bytes_down, row.bytes_up = outcome.bytes_down, outcome.bytes_up
            row.version_id = version.version_id
            s.flush()
            return CompletedRound(round=round_record(row), version=version)

    def rounds(self, job_id: str) -> builtins.list[RoundRecord]:
        """Every attempt at every round of ``job_id``, by round then attempt."""
        with self._db.session() as s:
            _require_job(s, job_id)
            stmt = (
                select(RoundRow)
                .where(RoundRow.job_id == job_id)
                .order_by(RoundRow.round_no, RoundRow.attempt)
            )
            return [round_record(r) for r in s.scalars(stmt)]


def _require_job(s: Session, job_id: str, *, lock: bool = False) -> JobRow:
    stmt = select(JobRow).where(JobRow.job_id == job_id)
    row = s.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFoundError(f"job {job_id!r} does not exist")
    return row


def _require_running(s: Session, job_id: str, round_no: int) -> JobRow:
    """The job, locked, after checking it is running and ``round_no`` is its next round."""
    require_count(round_no, "round_no", minimum=1)
    job = _require_job(s, job_id, lock=True)
    done = s.scalar(
        select(RoundRow.version_id).where(
            RoundRow.job_id == job_id,
            RoundRow.round_no == round_no,
            RoundRow.status == RoundStatus.COMPLETED.value,
        )
    )
    if done is not None or round_no <= job.rounds_done:
        made = f" (version {done})" if done else ""
        raise StoreError(f"round {round_no} of job {job_id!r} was already completed{made}")
    if job.status != JobStatus.RUNNING.value:
        raise StoreError(f"job {job_id!r} is {job.status}; rounds are recorded only while running")
    if round_no > job.rounds_total:
        raise StoreError(f"job {job_id!r} has {job.rounds_total} rounds, got round {round_no}")
    if round_no != job.rounds_done + 1:
        raise StoreError(
            f"job {job_id!r} has completed {job.rounds_done} rounds; the next one is "
            f"{job.rounds_done + 1}, got {round_no}"
        )
    return job


def _job(row: JobRow) -> JobRecord:
    return JobRecord(
        job_id=row.job_id, name=row.name, spec_yaml=row.spec_yaml,
        status=JobStatus(row.status), rounds_total=row.rounds_total,
        rounds_done=row.rounds_done, message=row.message,
        strategy_state=MappingProxyType(dict(row.strategy_state)),
        created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip
