"""Which nodes a job may use: only those of departments whose head approved it (and the audit)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from clawfed.coordinator.jobspec import JobSpec
from clawfed.core import NotFoundError
from clawfed.governance.approvals import ApprovalBook, ApprovalStatus
from clawfed.governance.audit import AuditLog
from clawfed.governance.db import Database
from clawfed.governance.jobs import JobStatus, JobStore
from clawfed.governance.nodes import NodeRegistry

log = logging.getLogger("clawfed.coordinator.approval_gate")

#: The action the gate writes to the audit chain when it leaves departments out or waits.
GATE_ACTION = "approval.gate"
#: The action written when a node's local policy refused a task.
REFUSAL_ACTION = "task.refused"


class ParticipationGate(Protocol):
    """Decides, before each phase that reads data, which nodes a job may ask."""

    async def wanted(
        self, round_no: int, participants: Sequence[str] | None
    ) -> Sequence[str] | None:
        """The node ids the round may use (``None``: every node); waits while too few."""
        ...


EventSink = Callable[[str, Mapping[str, Any]], None]


def _ignore(kind: str, data: Mapping[str, Any]) -> None:
    del kind, data


class ApprovalGate:
    """Keeps a job that ``requires_approval`` to the departments whose head approved it.

    Before every phase that reads data (statistics, initial weights, each round attempt)
    the engine asks :meth:`wanted`. Departments that were never asked get a request (for
    the job's purpose); nodes of departments not approved (pending or revoked) are left
    out; while fewer than ``min_nodes`` approved nodes are enrolled the gate waits, with
    the reason as the job's message. Every change in who is left out goes to the audit
    chain, so a revocation shows up there from the next round on.
    """

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        job_id: str,
        spec: JobSpec,
        *,
        events: EventSink = _ignore,
        poll_s: float = 0.5,
    ) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0 s, got {poll_s}")
        self._db = db
        self._audit = audit
        self._book = ApprovalBook(db, audit)
        self._job_id = job_id
        self._spec = spec
        self._events = events
        self._poll_s = poll_s
        self._last: tuple[str, ...] | None = None

    def _candidates(self, participants: Sequence[str] | None) -> dict[str, str]:
        """node id -> department of the enrolled, unrevoked nodes the job may ask at all."""
        nodes = {n.node_id: n.department for n in NodeRegistry(self._db).list() if not n.revoked}
        if participants is not None:
            nodes = {n: d for n, d in nodes.items() if n in set(participants)}
        return nodes

    def _ensure_requested(self, departments: set[str]) -> None:
        purpose = self._spec.purpose or ""
        for dept in sorted(departments):
            try:
                self._book.get(self._job_id, dept)
            except NotFoundError:
                self._book.request(self._job_id, dept, purpose)
                self._events(
                    "approval_requested",
                    {"job_id": self._job_id, "department": dept, "purpose": purpose},
                )

    def _statuses(self) -> dict[str, ApprovalStatus]:
        return {a.department: a.status for a in self._book.for_job(self._job_id)}

    def _note(self, round_no: int, left_out: dict[str, str], waiting: bool) -> None:
        """Audit and announce a change in who is left out (and whether the job waits)."""
        key = (*sorted(f"{d}:{s}" for d, s in left_out.items()), f"waiting={waiting}")
        if key == self._last:
            return
        self._last = key
        described = ", ".join(f"{d} ({s})" for d, s in sorted(left_out.items()))
        if waiting:
            outcome = "waiting"
            reason = message = (
                f"waiting for approval: job {self._job_id} needs {self._spec.min_nodes} "
                f"node(s) of approved departments; not approved: {described or 'none enrolled'}"
            )
        elif left_out:
            outcome, message = "excluded", ""
            reason = f"round {round_no} leaves out departments not approved: {described}"
        else:
            outcome, message = "admitted", ""
            reason = f"round {round_no}: every department the job uses has approved it"
        log.info("job %s: %s", self._job_id, reason)
        self._audit.append(
            "system", "system", GATE_ACTION, f"job:{self._job_id}", sorted(left_out),
            {"job_id": self._job_id, "round": round_no, "reason": reason}, outcome,
        )  # fmt: skip
        JobStore(self._db).set_status(self._job_id, JobStatus.RUNNING, message)
        kind = "approval_wait" if waiting else f"approval_{outcome}"
        self._events(kind, {"job_id": self._job_id, "round": round_no, "reason": reason})

    async def wanted(
        self, round_no: int, participants: Sequence[str] | None
    ) -> Sequence[str] | None:
        """The nodes of approved departments; wait (cancellably) while fewer than min_nodes."""
        if not self._spec.requires_approval:
            return participants
        while True:
            nodes = self._candidates(participants)
            self._ensure_requested(set(nodes.values()))
            statuses = self._statuses()
            allowed = sorted(
                n for n, d in nodes.items() if statuses.get(d) is ApprovalStatus.APPROVED
            )
            left_out = {
                d: str(statuses.get(d, "not requested"))
                for d in set(nodes.values())
                if statuses.get(d) is not ApprovalStatus.APPROVED
            }
            waiting = len(allowed) < self._spec.min_nodes
            if waiting or left_out or self._last is not None:
                self._note(round_no, left_out, waiting)
            if not waiting:
                return allowed
            await asyncio.sleep(self._poll_s)


class RefusalAuditor:
    """An event listener writing each task a node's local policy refused to the audit chain."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self._nodes = NodeRegistry(db)
        self._audit = audit

    def __call__(self, kind: str, data: Mapping[str, Any]) -> None:
        """Audit ``node_dropped`` events whose reason is ``refused``; ignore the rest."""
        if kind != "node_dropped" or data.get("reason") != "refused":
            return
        node_id = str(data.get("node_id", ""))
        try:
            departments = [self._nodes.get(node_id).department]
        except NotFoundError:
            departments = []
        job_id = str(data.get("job_id", ""))
        self._audit.append(
            node_id, "node", REFUSAL_ACTION, f"job:{job_id}", departments,
            {"job_id": job_id, "round": data.get("round"), "detail": str(data.get("detail", ""))},
            "refused",
        )  # fmt: skip
