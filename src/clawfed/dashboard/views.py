"""The data behind each dashboard page, cut to what the viewer may see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clawfed.api.context import ApiContext
from clawfed.governance.approvals import Approval
from clawfed.governance.inspect import MetricDelta, metric_deltas
from clawfed.governance.jobs import JobRecord
from clawfed.governance.nodes import NodeRecord
from clawfed.governance.policy import Action, Resource, User
from clawfed.governance.registry import ModelVersion

#: The pseudo-metric charted for every job: samples each department trained on per round.
SAMPLES = "samples"


@dataclass(frozen=True)
class Nav:
    """Which sections the viewer may open."""

    overview: bool
    approvals: bool
    audit: bool
    services: bool
    chat: bool


def nav(ctx: ApiContext, me: User) -> Nav:
    """The sections shown in the menu, each as the policy allows for this viewer."""
    own = [me.department] if me.department else []
    return Nav(
        overview=ctx.allows(me, Action.VIEW_OVERVIEW, Resource.overview(own or ["*"])),
        approvals=ctx.allows(me, Action.VIEW_APPROVALS, Resource.audit(own or ["*"])),
        audit=ctx.allows(me, Action.VIEW_AUDIT, Resource.audit(own or ["*"])),
        services=bool(me.entitlements) or ctx.allows(
            me, Action.USE_MODEL_SERVICE, Resource.model_service("*")),
        chat=ctx.allows(me, Action.VIEW_CHAT_TRANSCRIPT, Resource.transcript(me.user_id)),
    )  # fmt: skip


def visible_nodes(ctx: ApiContext, me: User) -> list[NodeRecord]:
    """Enrolled nodes the viewer may see."""
    return [
        n for n in ctx.nodes.list()
        if ctx.allows(me, Action.VIEW_NODE, Resource.node(n.node_id, n.department))
    ]  # fmt: skip


def visible_jobs(ctx: ApiContext, me: User) -> list[tuple[JobRecord, set[str], bool]]:
    """Jobs the viewer may see, with the departments shown and whether it is the whole job."""
    out = []
    for job in ctx.jobs.list():
        view = ctx.job_slice(me, job)
        if view is not None:
            out.append((job, *view))
    return out


def chart_series(versions: Sequence[ModelVersion], depts: set[str]) -> dict[str, Any]:
    """Per department and metric, the (round, value) points of each version (completed round)."""
    series: dict[str, dict[str, list[list[float]]]] = {}
    for v in versions:
        for dept in sorted({p.department for p in v.participants} & depts):
            points = series.setdefault(dept, {})
            n = sum(p.num_samples for p in v.participants if p.department == dept)
            points.setdefault(SAMPLES, []).append([v.round_no, n])
            for name, value in sorted(v.department_metrics.get(dept, {}).items()):
                points.setdefault(name, []).append([v.round_no, value])
    metrics = sorted({m for d in series.values() for m in d})
    return {"series": series, "metrics": metrics}


def lineage_graph(versions: Sequence[ModelVersion]) -> dict[str, Any]:
    """Nodes (versions) and edges (parent -> child) of a job's lineage, for the chart."""
    return {
        "nodes": [{"id": v.version_id, "number": v.number, "round": v.round_no}
                  for v in versions],
        "edges": [[v.parent_version_id, v.version_id] for v in versions
                  if v.parent_version_id is not None],
    }  # fmt: skip


def version_diff(
    a: ModelVersion, b: ModelVersion, depts: set[str], whole: bool
) -> list[MetricDelta]:
    """Metric deltas from ``a`` to ``b``: all for the whole job, else the viewer's departments."""
    return [d for d in metric_deltas(a, b) if whole or d.scope in depts]


def visible_approvals(ctx: ApiContext, me: User) -> list[tuple[Approval, bool, bool]]:
    """Every approval the viewer may see, with whether they may approve it and revoke it."""
    out = []
    for job in ctx.jobs.list():
        for a in ctx.approvals.for_job(job.job_id):
            res = Resource.approval(a.job_id, a.department)
            if not ctx.allows(me, Action.VIEW_APPROVALS, res):
                continue
            can_approve = a.status.value == "pending" and ctx.allows(me, Action.APPROVE_JOB, res)
            can_revoke = a.status.value != "revoked" and ctx.allows(me, Action.REVOKE_APPROVAL, res)
            out.append((a, can_approve, can_revoke))
    return out
