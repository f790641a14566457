"""ApprovalBook: departments' heads consent to a job using their data, for a purpose."""

from __future__ import annotations

import pytest
from governance_support import StepClock

from clawfed.core.errors import NotFoundError, StoreError
from clawfed.governance import AuditLog, Database, JobStore
from clawfed.governance.approvals import ApprovalBook, ApprovalStatus
from clawfed.governance.policy import PermissionDenied, Role, User

ADMIN = User("ada", Role.DATA_ADMIN)
CREDIT_HEAD = User("hugo", Role.DEPARTMENT_HEAD, "credit")
RISK_HEAD = User("rita", Role.DEPARTMENT_HEAD, "risk")
EMPLOYEE = User("emma", Role.EMPLOYEE, "credit")
AUDITOR = User("otto", Role.AUDITOR)
PURPOSE = "fraud detection"


@pytest.fixture
def audit(db: Database) -> AuditLog:
    return AuditLog(db)


@pytest.fixture
def book(db: Database, audit: AuditLog, clock: StepClock) -> ApprovalBook:
    JobStore(db, clock=clock).create("fraud", "fraud", "", 5)
    JobStore(db, clock=clock).create("churn", "churn", "", 5)
    return ApprovalBook(db, audit, clock=clock)


def _requested(book: ApprovalBook) -> None:
    for dept in ("credit", "risk"):
        book.request("fraud", dept, PURPOSE, by=ADMIN)


def test_a_job_waits_until_each_head_approves(book: ApprovalBook) -> None:
    _requested(book)
    assert book.waiting_on("fraud") == {"credit", "risk"}
    assert book.participating_departments("fraud") == set()
    got = book.approve(CREDIT_HEAD, "fraud", "credit", "Fraud  Detection")
    assert (got.status, got.decided_by, got.purpose) == (ApprovalStatus.APPROVED, "hugo", PURPOSE)
    assert got.decided_at is not None and got.decided_at > got.requested_at
    assert book.participating_departments("fraud") == {"credit"}
    assert book.waiting_on("fraud") == {"risk"}
    book.approve(RISK_HEAD, "fraud", "risk", PURPOSE)
    assert book.participating_departments("fraud") == {"credit", "risk"}
    assert [a.department for a in book.for_job("fraud")] == ["credit", "risk"]
    assert book.get("fraud", "risk").requested_by == "ada"


def test_a_data_admin_cannot_approve_for_a_department(book: ApprovalBook, audit: AuditLog) -> None:
    _requested(book)
    with pytest.raises(PermissionDenied, match="only the department's head"):
        book.approve(ADMIN, "fraud", "credit", PURPOSE)
    last = audit.list(newest_first=True, limit=1)[0]
    assert (last.actor, last.action, last.outcome) == ("ada", "approval.grant", "denied")
    assert book.get("fraud", "credit").status is ApprovalStatus.PENDING


@pytest.mark.parametrize("user", [RISK_HEAD, EMPLOYEE, AUDITOR], ids=lambda u: u.user_id)
def test_nobody_else_approves_for_credit(book: ApprovalBook, user: User) -> None:
    _requested(book)
    with pytest.raises(PermissionDenied):
        book.approve(user, "fraud", "credit", PURPOSE)
    assert book.participating_departments("fraud") == set()


def test_the_approval_must_name_the_requested_purpose(book: ApprovalBook, audit: AuditLog) -> None:
    _requested(book)
    with pytest.raises(StoreError, match="asks to use credit's data for 'fraud detection'"):
        book.approve(CREDIT_HEAD, "fraud", "credit", "marketing")
    last = audit.list(newest_first=True, limit=1)[0]
    assert (last.actor, last.outcome, last.detail["purpose"]) == ("hugo", "refused", "marketing")
    assert "marketing" in str(last.detail["error"])
    assert book.get("fraud", "credit").status is ApprovalStatus.PENDING


def test_revoking_stops_participation_from_the_next_round(
    book: ApprovalBook, audit: AuditLog
) -> None:
    _requested(book)
    book.approve(CREDIT_HEAD, "fraud", "credit", PURPOSE)
    book.approve(RISK_HEAD, "fraud", "risk", PURPOSE)
    before_round_2 = book.participating_departments("fraud")
    revoked = book.revoke(CREDIT_HEAD, "fraud", "credit", "audit season: data frozen")
    assert before_round_2 == {"credit", "risk"}
    assert book.participating_departments("fraud") == {"risk"}
    assert (revoked.status, revoked.reason) == (ApprovalStatus.REVOKED, "audit season: data frozen")
    with pytest.raises(StoreError, match="already revoked by hugo"):
        book.revoke(CREDIT_HEAD, "fraud", "credit", "again")
    with pytest.raises(StoreError, match="is revoked, not pending"):
        book.approve(CREDIT_HEAD, "fraud", "credit", PURPOSE)
    # The admin may stop a department's participation (but still not grant it).
    book.revoke(ADMIN, "fraud", "risk", "node compromised")
    assert book.participating_departments("fraud") == set()
    with pytest.raises(PermissionDenied):
        book.revoke(RISK_HEAD, "fraud", "credit", "not mine")
    assert audit.verify().ok


def test_a_head_can_decline_a_pending_request(book: ApprovalBook) -> None:
    _requested(book)
    declined = book.revoke(RISK_HEAD, "fraud", "risk", "not for this purpose")
    assert declined.status is ApprovalStatus.REVOKED
    assert book.waiting_on("fraud") == {"credit"}


def test_requests_update_reopen_and_keep_consent(book: ApprovalBook) -> None:
    book.request("fraud", "credit", "fraud detection v0")
    assert book.request("fraud", "credit", PURPOSE).purpose == PURPOSE  # still pending
    assert book.get("fraud", "credit").requested_by == "system"
    book.approve(CREDIT_HEAD, "fraud", "credit", PURPOSE)
    again = book.request("fraud", "credit", "FRAUD detection", by=ADMIN)
    assert again.status is ApprovalStatus.APPROVED and again.decided_by == "hugo"
    with pytest.raises(StoreError, match="already approved job 'fraud' for 'fraud detection'"):
        book.request("fraud", "credit", "marketing", by=ADMIN)
    book.revoke(CREDIT_HEAD, "fraud", "credit", "stop")
    reopened = book.request("fraud", "credit", "marketing", by=ADMIN)
    assert (reopened.status, reopened.purpose) == (ApprovalStatus.PENDING, "marketing")
    assert reopened.decided_by is None and reopened.reason is None


def test_only_a_data_admin_requests(book: ApprovalBook) -> None:
    with pytest.raises(PermissionDenied):
        book.request("fraud", "credit", PURPOSE, by=CREDIT_HEAD)
    with pytest.raises(NotFoundError):
        book.get("fraud", "credit")


def test_pending_for_shows_each_user_their_part(book: ApprovalBook) -> None:
    _requested(book)
    book.request("churn", "credit", "retention", by=ADMIN)
    book.approve(RISK_HEAD, "fraud", "risk", PURPOSE)
    pairs = lambda user: [(a.job_id, a.department) for a in book.pending_for(user)]  # noqa: E731
    assert pairs(CREDIT_HEAD) == [("fraud", "credit"), ("churn", "credit")]
    assert pairs(RISK_HEAD) == []
    assert pairs(ADMIN) == pairs(AUDITOR) == [("fraud", "credit"), ("churn", "credit")]
    assert pairs(EMPLOYEE) == []


def test_unknown_jobs_and_requests(book: ApprovalBook) -> None:
    with pytest.raises(NotFoundError, match="job 'nope' does not exist"):
        book.request("nope", "credit", PURPOSE)
    with pytest.raises(NotFoundError, match="no approval of credit was requested"):
        book.approve(CREDIT_HEAD, "fraud", "credit", PURPOSE)
    with pytest.raises(NotFoundError, match="job 'nope' does not exist"):
        book.participating_departments("nope")
    with pytest.raises(StoreError, match="purpose must not be empty"):
        book.request("fraud", "credit", "  ")
    with pytest.raises(StoreError, match="reason must not be empty"):
        book.revoke(CREDIT_HEAD, "fraud", "credit", "")


def test_every_step_is_in_the_audit_chain(book: ApprovalBook, audit: AuditLog) -> None:
    _requested(book)
    book.approve(CREDIT_HEAD, "fraud", "credit", PURPOSE)
    book.revoke(CREDIT_HEAD, "fraud", "credit", "done")
    rows = [(e.actor, e.action, e.resource, e.departments, e.outcome) for e in audit.list()]
    assert rows == [
        ("ada", "approval.request", "approval:fraud/credit", ("credit",), "allowed"),
        ("ada", "approval.request", "approval:fraud/risk", ("risk",), "allowed"),
        ("hugo", "approval.grant", "approval:fraud/credit", ("credit",), "allowed"),
        ("hugo", "approval.revoke", "approval:fraud/credit", ("credit",), "allowed"),
    ]
    assert audit.list()[2].detail == {"job_id": "fraud", "purpose": PURPOSE}
    assert [e.seq for e in audit.list(department="risk")] == [2]
    assert audit.verify().ok
