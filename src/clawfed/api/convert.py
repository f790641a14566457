"""Store records to the API's public shapes."""

from __future__ import annotations

from collections.abc import Iterable

from clawfed.api.schemas import (
    ApprovalOut,
    AuditOut,
    NodeOut,
    ParticipantOut,
    RoundOut,
    VersionOut,
)
from clawfed.governance.approvals import Approval
from clawfed.governance.audit import AuditRecord
from clawfed.governance.nodes import NodeRecord
from clawfed.governance.registry import ModelVersion, Participant
from clawfed.governance.rounds import RoundRecord


def node_out(n: NodeRecord) -> NodeOut:
    """A node as the API shows it."""
    return NodeOut(
        node_id=n.node_id, department=n.department, connected=n.connected and not n.revoked,
        revoked=n.revoked, enrolled_at=n.enrolled_at, last_seen_at=n.last_seen_at,
    )  # fmt: skip


def participants_out(parts: Iterable[Participant], depts: set[str]) -> list[ParticipantOut]:
    """The participants of ``depts`` (the others are left out)."""
    return [
        ParticipantOut(node_id=p.node_id, department=p.department, num_samples=p.num_samples)
        for p in parts
        if p.department in depts
    ]


def round_out(r: RoundRecord, depts: set[str], whole: bool) -> RoundOut:
    """A round; a partial view (``whole`` false) shows only ``depts``' participants."""
    return RoundOut(
        round_no=r.round_no, attempt=r.attempt, status=str(r.status), started_at=r.started_at,
        finished_at=r.finished_at, participants=participants_out(r.participants, depts),
        dropped=[{"node_id": d.node_id, "reason": d.reason} for d in r.dropped] if whole else [],
        metrics=dict(r.metrics) if whole else {}, bytes_down=r.bytes_down, bytes_up=r.bytes_up,
        message=r.message if whole else "", version_id=r.version_id,
    )  # fmt: skip


def version_out(v: ModelVersion, depts: set[str], whole: bool) -> VersionOut:
    """A model version; a partial view shows only ``depts``' participants and metrics."""
    return VersionOut(
        version_id=v.version_id, job_id=v.job_id, number=v.number, sha256=v.sha256,
        parent_version_id=v.parent_version_id, round_no=v.round_no,
        participants=participants_out(v.participants, depts), strategy=v.strategy.name,
        metrics=dict(v.metrics) if whole else {},
        department_metrics={d: dict(m) for d, m in v.department_metrics.items() if d in depts},
        created_at=v.created_at,
    )  # fmt: skip


def audit_out(r: AuditRecord) -> AuditOut:
    """An audit record."""
    return AuditOut(
        seq=r.seq, at=r.at, actor=r.actor, role=r.role, action=r.action, resource=r.resource,
        departments=list(r.departments), detail=dict(r.detail), outcome=r.outcome, hash=r.hash,
    )  # fmt: skip


def approval_out(a: Approval) -> ApprovalOut:
    """An approval."""
    return ApprovalOut(
        job_id=a.job_id, department=a.department, purpose=a.purpose, status=a.status.value,
        requested_by=a.requested_by, requested_at=a.requested_at, decided_by=a.decided_by,
        decided_at=a.decided_at, reason=a.reason,
    )  # fmt: skip
