"""The approval gate on the store (SQLite and PostgreSQL): who a round may use, and waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from clawfed.coordinator.approval_gate import GATE_ACTION, ApprovalGate, RefusalAuditor
from clawfed.coordinator.jobspec import parse_job
from clawfed.governance import AuditLog, Database, JobStore, NodeRegistry
from clawfed.governance.approvals import ApprovalBook, ApprovalStatus
from clawfed.governance.policy import Role, User

PURPOSE = "fraud detection"
CREDIT = User("hugo", Role.DEPARTMENT_HEAD, "credit")
RISK = User("rita", Role.DEPARTMENT_HEAD, "risk")


def _spec(requires: bool = True, min_nodes: int = 1, participants: str = "") -> Any:
    text = (
        f"name: fraud\nmodel: {{name: noop}}\nrounds: 3\nmin_nodes: {min_nodes}\n"
        f"purpose: {PURPOSE}\nrequires_approval: {str(requires).lower()}\n{participants}"
    )
    return parse_job(text)


@pytest.fixture
def federation(db: Database) -> Database:
    nodes = NodeRegistry(db)
    for i, (node, dept) in enumerate([("c1", "credit"), ("c2", "credit"), ("r1", "risk")]):
        nodes.enroll(node, dept, 100 + i, f"{i:02x}" * 32)
    nodes.enroll("x1", "ops", 200, "ff" * 32)
    nodes.revoke("x1", "left the federation")
    JobStore(db).create("fraud", "fraud", "", 3)
    return db


def _run(coro: Any, timeout_s: float = 10.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def test_a_job_without_approval_uses_its_participants_unchanged(federation: Database) -> None:
    gate = ApprovalGate(federation, AuditLog(federation), "fraud", _spec(requires=False))
    assert _run(gate.wanted(1, None)) is None
    assert _run(gate.wanted(1, ["c1"])) == ["c1"]
    assert ApprovalBook(federation, AuditLog(federation)).for_job("fraud") == []


def test_the_gate_requests_waits_then_admits_only_approved_departments(
    federation: Database,
) -> None:
    audit = AuditLog(federation)
    events: list[tuple[str, Mapping[str, Any]]] = []
    gate = ApprovalGate(federation, audit, "fraud", _spec(),
                        events=lambda k, d: events.append((k, d)), poll_s=0.02)  # fmt: skip
    book = ApprovalBook(federation, audit)

    async def scenario() -> list[str]:
        waiting = asyncio.create_task(gate.wanted(1, None))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # nobody approved yet
        assert {a.department: a.status for a in book.for_job("fraud")} == {
            "credit": ApprovalStatus.PENDING,
            "risk": ApprovalStatus.PENDING,
        }  # fmt: skip (revoked node x1's department is not asked)
        book.approve(CREDIT, "fraud", "credit", PURPOSE)
        return list(await waiting)

    assert _run(scenario()) == ["c1", "c2"]
    job = JobStore(federation).get("fraud")
    assert job.message == ""
    kinds = [k for k, _ in events]
    assert kinds.count("approval_requested") == 2 and "approval_wait" in kinds
    gates = audit.list(action=GATE_ACTION)
    assert [g.outcome for g in gates] == ["waiting", "excluded"]
    assert gates[1].departments == ("risk",) and "risk (pending)" in gates[1].detail["reason"]


def test_a_revocation_removes_the_department_from_the_next_round(federation: Database) -> None:
    audit = AuditLog(federation)
    book = ApprovalBook(federation, audit)
    for dept in ("credit", "risk"):
        book.request("fraud", dept, PURPOSE)
    book.approve(CREDIT, "fraud", "credit", PURPOSE)
    book.approve(RISK, "fraud", "risk", PURPOSE)
    gate = ApprovalGate(federation, audit, "fraud", _spec(min_nodes=1), poll_s=0.02)
    assert _run(gate.wanted(1, None)) == ["c1", "c2", "r1"]
    assert _run(gate.wanted(1, ["c1", "r1"])) == ["c1", "r1"]
    assert audit.list(action=GATE_ACTION) == []  # nobody left out: nothing to record
    book.revoke(RISK, "fraud", "risk", "audit season")
    assert _run(gate.wanted(2, None)) == ["c1", "c2"]
    last = audit.list(action=GATE_ACTION)[-1]
    assert last.outcome == "excluded" and "risk (revoked)" in last.detail["reason"]
    assert last.detail["round"] == 2


def test_the_gate_waits_until_min_nodes_approved_nodes_exist(federation: Database) -> None:
    audit = AuditLog(federation)
    book = ApprovalBook(federation, audit)
    gate = ApprovalGate(federation, audit, "fraud", _spec(min_nodes=3), poll_s=0.02)

    async def scenario() -> list[str]:
        waiting = asyncio.create_task(gate.wanted(1, None))
        await asyncio.sleep(0.1)
        book.approve(CREDIT, "fraud", "credit", PURPOSE)  # 2 of 3 nodes: still waiting
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert JobStore(federation).get("fraud").message.startswith("waiting for approval")
        book.approve(RISK, "fraud", "risk", PURPOSE)
        return list(await waiting)

    assert _run(scenario()) == ["c1", "c2", "r1"]
    gates = audit.list(action=GATE_ACTION)
    assert [g.outcome for g in gates] == ["waiting", "waiting", "admitted"]
    assert "credit (pending), risk (pending)" in gates[0].detail["reason"]
    assert "not approved: risk (pending)" in gates[1].detail["reason"]
    assert JobStore(federation).get("fraud").message == ""


def test_the_gate_refuses_a_bad_poll_interval(federation: Database) -> None:
    with pytest.raises(ValueError, match="poll_s must be > 0 s, got 0"):
        ApprovalGate(federation, AuditLog(federation), "fraud", _spec(), poll_s=0)


def test_refused_tasks_are_audited_with_the_nodes_department(federation: Database) -> None:
    audit = AuditLog(federation)
    listener = RefusalAuditor(federation, audit)
    listener("node_dropped", {"job_id": "fraud", "round": 2, "node_id": "r1",
                              "reason": "straggler", "detail": "slow"})  # fmt: skip
    listener("round_started", {"job_id": "fraud", "round": 2})
    assert audit.list(action="task.refused") == []
    listener("node_dropped", {"job_id": "fraud", "round": 2, "node_id": "r1",
                              "reason": "refused", "detail": "purpose not allowed"})  # fmt: skip
    (rec,) = audit.list(action="task.refused")
    assert (rec.actor, rec.role, rec.resource, rec.departments, rec.outcome) == (
        "r1", "node", "job:fraud", ("risk",), "refused",
    )  # fmt: skip
    assert rec.detail == {"job_id": "fraud", "round": 2, "detail": "purpose not allowed"}
