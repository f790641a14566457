"""What chat may read from the governance store: nodes, jobs, versions, audit (read only)."""

from __future__ import annotations

from datetime import datetime

from clawfed.governance.audit import AuditLog, AuditRecord
from clawfed.governance.audit_chain import VerifyResult
from clawfed.governance.db import Database
from clawfed.governance.jobs import JobRecord, JobStore
from clawfed.governance.nodes import NodeRecord, NodeRegistry
from clawfed.governance.registry import ModelRegistry, ModelVersion
from clawfed.governance.rounds import RoundRecord


class ChatStore:
    """The read side of the store that chat answers come from; it never writes.

    Parameters
    ----------
    db
        The coordinator's database.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._nodes = NodeRegistry(db)
        self._jobs = JobStore(db)
        self._versions = ModelRegistry(db)
        self._audit = AuditLog(db)

    def nodes(self) -> list[NodeRecord]:
        """Every enrolled node (revoked ones included), by node id."""
        return self._nodes.list()

    def node(self, node_id: str) -> NodeRecord:
        """One node; ``NotFoundError`` if unknown."""
        return self._nodes.get(node_id)

    def jobs(self) -> list[JobRecord]:
        """Every job, oldest first."""
        return self._jobs.list()

    def job(self, job_id: str) -> JobRecord:
        """One job by id (the coordinator uses the job name as id); ``NotFoundError`` if none."""
        return self._jobs.get(job_id)

    def rounds(self, job_id: str) -> list[RoundRecord]:
        """Every attempt at every round of a job."""
        return self._jobs.rounds(job_id)

    def versions(self, job_id: str | None = None) -> list[ModelVersion]:
        """Model versions (of ``job_id`` if given), by job and number."""
        return self._versions.list(job_id)

    def version(self, version_id: str) -> ModelVersion:
        """One version, e.g. ``fraud@v3``; ``NotFoundError`` if absent."""
        return self._versions.get(version_id)

    def audit(
        self, limit: int = 10, *, department: str | None = None, since: datetime | None = None
    ) -> list[AuditRecord]:
        """The newest audit entries (touching ``department``, at or after ``since``)."""
        return self._audit.list(since, department, limit=limit, newest_first=True)

    def verify_audit(self) -> VerifyResult:
        """Recompute the audit hash chain."""
        return self._audit.verify()
