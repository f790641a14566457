"""``/api/v1/audit`` (with verify), ``/approvals`` and the model service ``/services``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from clawfed.api.auth import Ctx, Me
from clawfed.api.convert import approval_out, audit_out
from clawfed.api.events import LiveEvent
from clawfed.api.predict import predict
from clawfed.api.schemas import (
    ApprovalOut,
    ApproveIn,
    AuditOut,
    PredictIn,
    PredictOut,
    RevokeIn,
    VerifyOut,
)
from clawfed.core import ConfigError
from clawfed.governance.artifacts import ArtifactStore
from clawfed.governance.policy import Action, Resource

router = APIRouter(prefix="/api/v1", tags=["governance"])


@router.get("/audit", response_model=list[AuditOut])
def audit(
    ctx: Ctx,
    me: Me,
    department: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AuditOut]:
    """Audit entries, newest first; a head must filter to their own department."""
    scope = Resource.audit([department] if department else [])
    ctx.require(me, Action.VIEW_AUDIT, scope)
    return [audit_out(r) for r in ctx.audit.list(None, department, action, limit=limit,
                                                  newest_first=True)]  # fmt: skip


@router.get("/audit/verify", response_model=VerifyOut)
def verify(ctx: Ctx, me: Me) -> VerifyOut:
    """Recompute the hash chain; ``ok`` false names the first broken entry."""
    ctx.require(me, Action.VERIFY_AUDIT, Resource.audit(), audit=True)
    result = ctx.audit.verify()
    head = ctx.audit.head() if result.ok else None
    return VerifyOut(
        ok=result.ok, checked=result.checked, first_bad_seq=result.first_bad_seq,
        problem=str(result.problem) if result.problem else None, message=result.message,
        head_seq=head.seq if head else None, head_hash=head.hash if head else None,
    )  # fmt: skip


@router.get("/approvals", response_model=list[ApprovalOut])
def approvals(
    ctx: Ctx, me: Me, job: Annotated[str | None, Query(max_length=128)] = None
) -> list[ApprovalOut]:
    """Approvals the caller may see: a job's, or every pending one."""
    items = ctx.approvals.for_job(job) if job else ctx.approvals.pending_for(me)
    shown = [
        approval_out(a) for a in items
        if ctx.allows(me, Action.VIEW_APPROVALS, Resource.approval(a.job_id, a.department))
    ]  # fmt: skip
    if not shown:
        own = [me.department] if me.department else []
        ctx.require(me, Action.VIEW_APPROVALS, Resource.audit(own or ctx.departments()))
    return shown


def _changed(ctx: Ctx, a: ApprovalOut) -> ApprovalOut:
    """Tell live views an approval changed; return it."""
    ctx.broker.publish(LiveEvent("approval_changed", a.job_id, frozenset({a.department}),
                                 {"department": a.department, "status": a.status}))  # fmt: skip
    return a


@router.post("/approvals/{job_id}/{department}/approve", response_model=ApprovalOut)
async def approve(job_id: str, department: str, body: ApproveIn, ctx: Ctx, me: Me) -> ApprovalOut:
    """As the department's head, approve the job's use of its data for the purpose named."""
    a = ctx.approvals.approve(me, job_id, department, body.purpose)
    return _changed(ctx, approval_out(a))


@router.post("/approvals/{job_id}/{department}/revoke", response_model=ApprovalOut)
async def revoke(job_id: str, department: str, body: RevokeIn, ctx: Ctx, me: Me) -> ApprovalOut:
    """Withdraw the approval: the department leaves the job from its next round."""
    a = ctx.approvals.revoke(me, job_id, department, body.reason)
    return _changed(ctx, approval_out(a))


@router.post("/services/{job_id}/predict", response_model=PredictOut)
def model_service(job_id: str, body: PredictIn, ctx: Ctx, me: Me) -> PredictOut:
    """Predictions of a job's model (latest version, or ``version_id``) for feature rows."""
    ctx.require(me, Action.USE_MODEL_SERVICE, Resource.model_service(job_id), audit=True)
    job = ctx.job(job_id)
    version = ctx.registry.get(body.version_id) if body.version_id else ctx.registry.latest(job_id)
    if version.job_id != job_id:
        raise ConfigError(f"version {version.version_id} belongs to job {version.job_id}, "
                          f"not {job_id}")  # fmt: skip
    weights = ArtifactStore(ctx.artifacts_root / job_id).load(version.artifact_path, version.sha256)
    scores = predict(ctx.db, ctx.artifacts_root, ctx.spec(job), version, weights, body.rows)
    return PredictOut(job_id=job_id, version_id=version.version_id, predictions=scores)
