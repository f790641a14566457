"""What the API works on: the store, the policy's helpers and the running federation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from clawfed.api.events import EventBroker
from clawfed.api.metrics import FederationMetrics
from clawfed.api.problems import Problem
from clawfed.api.sessions import SessionBook
from clawfed.coordinator.jobspec import JobSpec, parse_job
from clawfed.core import ConfigError, NotFoundError
from clawfed.governance.approvals import ApprovalBook
from clawfed.governance.audit import AuditLog
from clawfed.governance.db import Database
from clawfed.governance.jobs import JobRecord, JobStore
from clawfed.governance.nodes import NodeRegistry
from clawfed.governance.policy import Action, Resource, User, audit_decision, decide
from clawfed.governance.registry import ModelRegistry
from clawfed.governance.users import UserDirectory


class FederationControl(Protocol):
    """What only the running coordinator knows or does (the store holds everything else)."""

    def datasets(self) -> Mapping[str, Mapping[str, str]]:
        """node id -> dataset name -> metadata JSON, of the nodes connected now."""
        ...

    def submit(self, spec: JobSpec, actor: str) -> None:
        """Store and start a job."""
        ...

    async def cancel(self, job_id: str, actor: str) -> None:
        """Cancel a pending or running job."""
        ...


@dataclass
class ApiContext:
    """Everything a request handler needs; built once per app by ``create_app``."""

    db: Database
    federation: str
    artifacts_root: Path
    control: FederationControl
    audit: AuditLog = field(init=False)
    users: UserDirectory = field(init=False)
    approvals: ApprovalBook = field(init=False)
    jobs: JobStore = field(init=False)
    nodes: NodeRegistry = field(init=False)
    registry: ModelRegistry = field(init=False)
    broker: EventBroker = field(default_factory=EventBroker)
    metrics: FederationMetrics = field(default_factory=FederationMetrics)
    sessions: SessionBook = field(default_factory=SessionBook)

    def __post_init__(self) -> None:
        self.audit = AuditLog(self.db)
        self.users = UserDirectory(self.db, audit=self.audit)
        self.approvals = ApprovalBook(self.db, self.audit)
        self.jobs = JobStore(self.db)
        self.nodes = NodeRegistry(self.db)
        self.registry = ModelRegistry(self.db)

    def allows(self, user: User, action: Action, resource: Resource) -> bool:
        """Whether the policy allows it (no audit: for filtering what a list shows)."""
        return decide(user, action, resource).allowed

    def require(
        self, user: User, action: Action, resource: Resource, *, audit: bool = False
    ) -> None:
        """Refuse with 403 (audited) unless the policy allows; ``audit`` records allowed too."""
        decision = decide(user, action, resource)
        if not decision.allowed or audit:
            audit_decision(self.audit, user, action, resource, decision, detail={"via": "api"})
        if not decision.allowed:
            raise Problem(403, "forbidden", decision.reason, "Not allowed")

    def departments(self) -> list[str]:
        """Every department with an enrolled node."""
        return sorted({n.department for n in self.nodes.list()})

    def job(self, job_id: str) -> JobRecord:
        """The stored job ``job_id`` (404 if there is none)."""
        return self.jobs.get(job_id)

    def spec(self, job: JobRecord) -> JobSpec:
        """The job's parsed spec."""
        return parse_job(job.spec_yaml, source=f"stored job {job.job_id}")

    def job_departments(self, job: JobRecord) -> set[str]:
        """Departments whose data the job uses or asked for (approvals, rounds, listed nodes)."""
        depts = {a.department for a in self.approvals.for_job(job.job_id)}
        for r in self.jobs.rounds(job.job_id):
            depts.update(p.department for p in r.participants if p.department)
        try:
            listed: Sequence[str] | None = self.spec(job).participants
        except ConfigError:
            listed = None
        by_node = {n.node_id: n.department for n in self.nodes.list()}
        if listed is not None:
            depts.update(by_node[n] for n in listed if n in by_node)
        return depts

    def visible_departments(self, user: User, action: Action, depts: set[str]) -> set[str]:
        """Those of ``depts`` whose slice ``user`` may see with ``action``."""
        return {d for d in depts if self.allows(user, action, Resource.department(d))}

    def job_view(
        self, user: User, job: JobRecord, action: Action = Action.VIEW_JOB
    ) -> tuple[set[str], bool]:
        """The departments of ``job`` ``user`` may see, and whether that is the whole job.

        A data admin sees the whole job; a department head the slice about their own
        department, if the job touches it; anyone else gets a 403 (audited).
        """
        view = self.job_slice(user, job, action)
        if view is None:
            self.require(user, action, Resource.job(job.job_id, self.job_departments(job)))
            raise NotFoundError(f"job {job.job_id!r}")  # unreachable: require raised
        return view

    def job_slice(
        self, user: User, job: JobRecord, action: Action = Action.VIEW_JOB
    ) -> tuple[set[str], bool] | None:
        """Like :meth:`job_view`, but None instead of a 403 (for lists)."""
        depts = self.job_departments(job)
        whole = Resource.job(job.job_id, depts)
        if self.allows(user, action, whole) and self.allows(user, action, Resource.job(job.job_id)):
            return depts, True
        own = {user.department} & depts if user.department else set()
        if own and self.allows(user, action, Resource.job(job.job_id, own)):
            return own, False
        return None
