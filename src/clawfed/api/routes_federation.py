"""``/api/v1/federation``, ``/nodes``, ``/datasets``, ``/me`` and ``/metrics``."""

from __future__ import annotations

import json
from collections import Counter

from fastapi import APIRouter
from fastapi.responses import Response

from clawfed.api.auth import Ctx, Me
from clawfed.api.convert import node_out
from clawfed.api.metrics import CONTENT_TYPE, NodeUp
from clawfed.api.schemas import DatasetOut, FederationOut, MeOut, NodeOut
from clawfed.governance.policy import Action, Resource

router = APIRouter(prefix="/api/v1", tags=["federation"])


@router.get("/federation", response_model=FederationOut)
def federation(ctx: Ctx, me: Me) -> FederationOut:
    """The overview: departments, nodes and jobs (a head's view covers their department)."""
    everything = ctx.departments()
    whole = ctx.allows(me, Action.VIEW_OVERVIEW, Resource.overview(everything))
    if whole:
        depts = set(everything)
    else:
        own = {me.department} if me.department else set()
        ctx.require(me, Action.VIEW_OVERVIEW, Resource.overview(own or everything))
        depts = own
    nodes = [n for n in ctx.nodes.list() if n.department in depts and not n.revoked]
    jobs = [j for j in ctx.jobs.list() if whole or ctx.job_departments(j) & depts]
    return FederationOut(
        name=ctx.federation, departments=sorted(depts), nodes_total=len(nodes),
        nodes_live=sum(n.connected for n in nodes),
        jobs_by_status=dict(Counter(str(j.status) for j in jobs)),
    )  # fmt: skip


@router.get("/nodes", response_model=list[NodeOut])
def nodes(ctx: Ctx, me: Me) -> list[NodeOut]:
    """The enrolled nodes the caller may see, with liveness and department."""
    shown = [
        node_out(n) for n in ctx.nodes.list()
        if ctx.allows(me, Action.VIEW_NODE, Resource.node(n.node_id, n.department))
    ]  # fmt: skip
    if not shown:  # nothing visible: fine for a head of a department without nodes yet
        own = {me.department} if me.department else set()
        ctx.require(me, Action.VIEW_NODE, Resource.overview(own or ctx.departments()))
    return shown


@router.get("/nodes/{node_id}", response_model=NodeOut)
def node(node_id: str, ctx: Ctx, me: Me) -> NodeOut:
    """One node."""
    record = ctx.nodes.get(node_id)
    ctx.require(me, Action.VIEW_NODE, Resource.node(record.node_id, record.department))
    return node_out(record)


@router.get("/datasets", response_model=list[DatasetOut])
def datasets(ctx: Ctx, me: Me) -> list[DatasetOut]:
    """Metadata of the datasets the connected nodes offer (schema, counts; never rows)."""
    by_node = {n.node_id: n.department for n in ctx.nodes.list()}
    out: list[DatasetOut] = []
    for node_id, offered in sorted(ctx.control.datasets().items()):
        dept = by_node.get(node_id, "")
        if not dept or not ctx.allows(me, Action.VIEW_DATASETS, Resource.node(node_id, dept)):
            continue
        for name, meta in sorted(offered.items()):
            try:
                parsed = json.loads(meta) if meta else {}
            except json.JSONDecodeError:
                parsed = {"unparsed": meta}
            out.append(DatasetOut(node_id=node_id, department=dept, name=name,
                                  metadata=parsed if isinstance(parsed, dict) else {}))  # fmt: skip
    if not out and not ctx.allows(me, Action.VIEW_DATASETS, Resource.overview([])):
        own = {me.department} if me.department else set()
        ctx.require(me, Action.VIEW_DATASETS, Resource.overview(own or ctx.departments()))
    return out


@router.get("/me", response_model=MeOut)
def whoami(ctx: Ctx, me: Me) -> MeOut:
    """The caller's own profile."""
    ctx.require(me, Action.VIEW_USER, Resource.user(me.user_id))
    return MeOut(
        user_id=me.user_id, display_name=me.display_name, role=me.role.value,
        department=me.department, entitlements=sorted(me.entitlements),
    )  # fmt: skip


metrics_router = APIRouter(tags=["metrics"])


@metrics_router.get("/metrics", response_class=Response)
def metrics(ctx: Ctx, me: Me) -> Response:
    """Prometheus metrics (text exposition format) for a scraper with a data admin's token."""
    ctx.require(me, Action.VIEW_METRICS, Resource.overview(ctx.departments()))
    nodes = [NodeUp(n.node_id, n.department, n.connected) for n in ctx.nodes.list()
             if not n.revoked]  # fmt: skip
    return Response(ctx.metrics.render(nodes), media_type=CONTENT_TYPE)
