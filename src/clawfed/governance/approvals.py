"""``ApprovalBook``: a department's head consents, for a named purpose, to a job using its data."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from clawfed.core.errors import ClawfedError, NotFoundError, StoreError
from clawfed.governance._common import now_utc, require_text, utc
from clawfed.governance.audit import AuditLog
from clawfed.governance.db import Database
from clawfed.governance.policy import (
    Action,
    PermissionDenied,
    Resource,
    User,
    audit_decision,
    decide,
)
from clawfed.governance.rbac_tables import ApprovalRow
from clawfed.governance.tables import JobRow

_SYSTEM = "system"


class ApprovalStatus(StrEnum):
    """Where a department's approval of a job stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Approval:
    """One department's approval of one job; ``decided_*`` name the last decision."""

    job_id: str
    department: str
    purpose: str
    status: ApprovalStatus
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


def _purpose(value: object) -> str:
    text = require_text(value, "purpose", 500)
    return " ".join(text.split())


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


class ApprovalBook:
    """Requests, approvals and revocations of departments' data use; all go to the audit chain.

    Only a department's head approves for it: a data admin requests and may revoke (stop a
    department's participation) but cannot consent on a department's behalf.
    """

    def __init__(
        self, db: Database, audit: AuditLog, *, clock: Callable[[], datetime] = now_utc
    ) -> None:
        self._db = db
        self._audit = audit
        self._clock = clock

    def _gate(self, user: User | None, action: Action, resource: Resource, **detail: str) -> None:
        """Refuse, and write the refusal to the audit chain, unless ``user`` may act."""
        if user is None:
            return
        decision = decide(user, action, resource)
        if not decision.allowed:
            audit_decision(self._audit, user, action, resource, decision, detail=detail)
            raise PermissionDenied(user, action, resource, decision)

    def _record(
        self, user: User | None, action: Action, resource: Resource, outcome: str, **detail: str
    ) -> None:
        actor, role = (user.user_id, user.role.value) if user else (_SYSTEM, _SYSTEM)
        self._audit.append(
            actor, role, action.value, resource.name, sorted(resource.departments),
            {"job_id": resource.job_id or "", **detail}, outcome,
        )  # fmt: skip

    def _change(
        self,
        user: User | None,
        action: Action,
        resource: Resource,
        work: Callable[[Session], ApprovalRow],
        **detail: str,
    ) -> Approval:
        """Run ``work`` in one transaction; audit its outcome (``allowed`` or ``refused``)."""
        try:
            with self._db.session() as s:
                approval = _approval(work(s))
        except ClawfedError as exc:
            self._record(user, action, resource, "refused", **detail, error=str(exc))
            raise
        self._record(user, action, resource, "allowed", **detail)
        return approval

    def request(
        self, job_id: str, department: str, purpose: str, *, by: User | None = None
    ) -> Approval:
        """Ask ``department``'s head to let ``job_id`` use its data for ``purpose``.

        Asking again while pending updates the purpose; an approved request with the same
        purpose is returned unchanged (another purpose needs a revocation first); a revoked
        one becomes pending again.
        """
        require_text(job_id, "job_id", 128)
        require_text(department, "department", 128)
        wanted = _purpose(purpose)
        resource = Resource.approval(job_id, department)
        self._gate(by, Action.REQUEST_APPROVAL, resource, purpose=wanted)
        actor = by.user_id if by else _SYSTEM

        def work(s: Session) -> ApprovalRow:
            if s.get(JobRow, job_id) is None:
                raise NotFoundError(f"job {job_id!r} does not exist")
            row = _find(s, job_id, department, lock=True)
            if row is not None and row.status == ApprovalStatus.APPROVED.value:
                if _same(row.purpose, wanted):
                    return row
                raise StoreError(
                    f"{department} already approved job {job_id!r} for {row.purpose!r}; "
                    f"to use its data for {wanted!r}, revoke that approval and request again"
                )
            if row is None:
                row = ApprovalRow(job_id=job_id, department=department)
                s.add(row)
            row.purpose, row.status = wanted, ApprovalStatus.PENDING.value
            row.requested_by, row.requested_at = actor, utc(self._clock(), "clock time")
            row.decided_by, row.decided_at, row.reason = None, None, None
            s.flush()
            return row

        return self._change(by, Action.REQUEST_APPROVAL, resource, work, purpose=wanted)

    def approve(self, user: User, job_id: str, department: str, purpose: str) -> Approval:
        """``user``, the head of ``department``, lets ``job_id`` use its data for ``purpose``.

        ``purpose`` must restate the purpose requested, so consent is given to that use.
        """
        named = _purpose(purpose)
        resource = Resource.approval(job_id, department)
        self._gate(user, Action.APPROVE_JOB, resource, purpose=named)

        def work(s: Session) -> ApprovalRow:
            row = _row(s, job_id, department, lock=True)
            if row.status != ApprovalStatus.PENDING.value:
                raise StoreError(
                    f"the approval of {department} for job {job_id!r} is {row.status}, not "
                    "pending; a revoked approval needs a new request"
                )
            if not _same(row.purpose, named):
                raise StoreError(
                    f"job {job_id!r} asks to use {department}'s data for {row.purpose!r}, but "
                    f"the approval names {named!r}; approve the purpose requested, or ask a "
                    "data admin to change the request"
                )
            row.status = ApprovalStatus.APPROVED.value
            row.decided_by, row.decided_at = user.user_id, utc(self._clock(), "clock time")
            s.flush()
            return row

        return self._change(user, Action.APPROVE_JOB, resource, work, purpose=named)

    def revoke(self, user: User, job_id: str, department: str, reason: str) -> Approval:
        """Withdraw (or decline) ``department``'s approval; it leaves the job's next round."""
        require_text(reason, "reason", 2000)
        resource = Resource.approval(job_id, department)
        self._gate(user, Action.REVOKE_APPROVAL, resource, reason=reason)

        def work(s: Session) -> ApprovalRow:
            row = _row(s, job_id, department, lock=True)
            if row.status == ApprovalStatus.REVOKED.value:
                raise StoreError(
                    f"the approval of {department} for job {job_id!r} was already revoked "
                    f"by {row.decided_by}"
                )
            row.status, row.reason = ApprovalStatus.REVOKED.value, reason
            row.decided_by, row.decided_at = user.user_id, utc(self._clock(), "clock time")
            s.flush()
            return row

        return self._change(user, Action.REVOKE_APPROVAL, resource, work, reason=reason)

    def get(self, job_id: str, department: str) -> Approval:
        """The approval of ``department`` for ``job_id``; ``NotFoundError`` if never requested."""
        with self._db.session() as s:
            return _approval(_row(s, job_id, department))

    def for_job(self, job_id: str) -> builtins.list[Approval]:
        """Every department's approval for ``job_id``, by department."""
        with self._db.session() as s:
            if s.get(JobRow, job_id) is None:
                raise NotFoundError(f"job {job_id!r} does not exist")
            stmt = (
                select(ApprovalRow)
                .where(ApprovalRow.job_id == job_id)
                .order_by(ApprovalRow.department)
            )
            return [_approval(r) for r in s.scalars(stmt)]

    def participating_departments(self, job_id: str) -> set[str]:
        """Departments whose data ``job_id`` may use now (approved and not revoked).

        The round engine reads this before each round: a department revoked meanwhile
        takes no part from the next round on.
        """
        return {a.department for a in self.for_job(job_id) if a.status is ApprovalStatus.APPROVED}

    def waiting_on(self, job_id: str) -> set[str]:
        """Departments whose head has not decided yet on ``job_id``."""
        return {a.department for a in self.for_job(job_id) if a.status is ApprovalStatus.PENDING}

    def pending_for(self, user: User) -> builtins.list[Approval]:
        """Pending requests ``user`` may see: a head's own department's, every one for an admin.

        Ordered by request time; an employee sees none.
        """
        stmt = (
            select(ApprovalRow)
            .where(ApprovalRow.status == ApprovalStatus.PENDING.value)
            .order_by(ApprovalRow.requested_at, ApprovalRow.job_id, ApprovalRow.department)
        )
        with self._db.session() as s:
            rows = [_approval(r) for r in s.scalars(stmt)]
        return [
            a
            for a in rows
            if decide(
                user, Action.VIEW_APPROVALS, Resource.approval(a.job_id, a.department)
            ).allowed
        ]


def _find(s: Session, job_id: str, department: str, *, lock: bool = False) -> ApprovalRow | None:
    stmt = select(ApprovalRow).where(
        ApprovalRow.job_id == job_id, ApprovalRow.department == department
    )
    return s.scalar(stmt.with_for_update() if lock else stmt)


def _row(s: Session, job_id: str, department: str, *, lock: bool = False) -> ApprovalRow:
    row = _find(s, job_id, department, lock=lock)
    if row is None:
        raise NotFoundError(f"no approval of {department} was requested for job {job_id!r}")
    return row


def _approval(row: ApprovalRow) -> Approval:
    return Approval(
        job_id=row.job_id, department=row.department, purpose=row.purpose,
        status=ApprovalStatus(row.status), requested_by=row.requested_by,
        requested_at=row.requested_at, decided_by=row.decided_by, decided_at=row.decided_at,
        reason=row.reason,
    )  # fmt: skip
