"""``/api/v1/jobs`` (list, submit, status, cancel), rounds, versions and contributions."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from clawfed.api.auth import Ctx, Me
from clawfed.api.context import ApiContext
from clawfed.api.convert import round_out, version_out
from clawfed.api.problems import Problem
from clawfed.api.schemas import (
    ContributionOut,
    JobOut,
    JobSubmit,
    LineageOut,
    RoundOut,
    VersionOut,
)
from clawfed.coordinator.jobspec import parse_job
from clawfed.core import ConfigError, NotFoundError
from clawfed.governance.jobs import JobRecord
from clawfed.governance.policy import Action, Resource, User
from clawfed.governance.rounds import ContributionStore

router = APIRouter(prefix="/api/v1", tags=["jobs"])


def job_out(ctx: ApiContext, job: JobRecord, depts: set[str], whole: bool) -> JobOut:
    """A job as the API shows it (the spec only to those who see the whole job)."""
    try:
        spec = ctx.spec(job)
        purpose, needs = spec.purpose, spec.requires_approval
    except ConfigError:
        purpose, needs = None, False
    return JobOut(
        job_id=job.job_id, status=str(job.status), rounds_done=job.rounds_done,
        rounds_total=job.rounds_total, message=job.message if whole else "", purpose=purpose,
        requires_approval=needs, departments=sorted(depts), created_at=job.created_at,
        spec_yaml=job.spec_yaml if whole else None,
    )  # fmt: skip


def _view(ctx: ApiContext, me: User, job: JobRecord, action: Action) -> tuple[set[str], bool]:
    return ctx.job_view(me, job, action)


@router.get("/jobs", response_model=list[JobOut])
def list_jobs(ctx: Ctx, me: Me) -> list[JobOut]:
    """The jobs the caller may see (a head: those touching their department)."""
    out = []
    for job in ctx.jobs.list():
        view = ctx.job_slice(me, job)
        if view is not None:
            out.append(job_out(ctx, job, *view))
    if not out:
        ctx.require(me, Action.VIEW_JOB, Resource.overview({me.department} if me.department
                                                           else ctx.departments()))  # fmt: skip
    return out


@router.post("/jobs", response_model=JobOut, status_code=201)
async def submit_job(body: JobSubmit, ctx: Ctx, me: Me) -> JSONResponse:
    """Submit a job file; it starts at once (approval-gated jobs wait for the heads)."""
    spec = parse_job(body.spec_yaml, source="submitted job")
    ctx.require(me, Action.SUBMIT_JOB, Resource.job(spec.name), audit=True)
    try:
        existing = ctx.jobs.get(spec.name)
    except NotFoundError:
        existing = None
    if existing is not None:
        raise Problem(409, "conflict", f"a job named {spec.name!r} already exists "
                      f"({existing.status}); choose another name", "Conflict")  # fmt: skip
    ctx.control.submit(spec, me.user_id)
    job = ctx.job(spec.name)
    out = job_out(ctx, job, ctx.job_departments(job), True)
    return JSONResponse(out.model_dump(mode="json"), status_code=201,
                        headers={"Location": f"/api/v1/jobs/{job.job_id}"})  # fmt: skip


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, ctx: Ctx, me: Me) -> JobOut:
    """A job's status and progress."""
    job = ctx.job(job_id)
    depts, whole = _view(ctx, me, job, Action.VIEW_JOB)
    return job_out(ctx, job, depts, whole)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
async def cancel_job(job_id: str, ctx: Ctx, me: Me) -> JobOut:
    """Cancel a pending or running job."""
    job = ctx.job(job_id)
    ctx.require(me, Action.CANCEL_JOB, Resource.job(job_id, ctx.job_departments(job)), audit=True)
    await ctx.control.cancel(job_id, me.user_id)
    job = ctx.job(job_id)
    return job_out(ctx, job, ctx.job_departments(job), True)


@router.get("/jobs/{job_id}/rounds", response_model=list[RoundOut])
def rounds(job_id: str, ctx: Ctx, me: Me) -> list[RoundOut]:
    """Every round attempt of a job (a head sees their department's participants only)."""
    job = ctx.job(job_id)
    depts, whole = _view(ctx, me, job, Action.VIEW_JOB)
    return [round_out(r, depts, whole) for r in ctx.jobs.rounds(job_id)]


@router.get("/jobs/{job_id}/versions", response_model=list[VersionOut])
def versions(job_id: str, ctx: Ctx, me: Me) -> list[VersionOut]:
    """The model versions of a job, oldest first."""
    job = ctx.job(job_id)
    depts, whole = _view(ctx, me, job, Action.VIEW_VERSIONS)
    return [version_out(v, depts, whole) for v in ctx.registry.list(job_id)]


@router.get("/versions/{version_id}", response_model=LineageOut)
def version(version_id: str, ctx: Ctx, me: Me) -> LineageOut:
    """One version with its lineage (its ancestors' ids, newest first)."""
    v = ctx.registry.get(version_id)
    depts, whole = _view(ctx, me, ctx.job(v.job_id), Action.VIEW_VERSIONS)
    chain = [a.version_id for a in ctx.registry.lineage(version_id)]
    return LineageOut(version=version_out(v, depts, whole), lineage=chain)


@router.get("/jobs/{job_id}/contributions", response_model=list[ContributionOut])
def contributions(job_id: str, ctx: Ctx, me: Me) -> list[ContributionOut]:
    """Each department's part in each completed round (the ledger's, else sample shares)."""
    job = ctx.job(job_id)
    depts, _whole = ctx.job_view(me, job, Action.VIEW_CONTRIBUTIONS)
    versions = {v.round_no: v for v in ctx.registry.list(job_id)}
    ledger = [e for e in ContributionStore(ctx.db).entries(job_id) if e.department in depts]
    out: list[ContributionOut] = []
    for e in ledger:
        v = versions.get(e.round_no)
        total = max(1, v.num_samples) if v else max(1, e.num_samples)
        out.append(ContributionOut(
            version_id=v.version_id if v else None, round_no=e.round_no,
            department=e.department, node_id=e.node_id, num_samples=e.num_samples,
            sample_share=e.num_samples / total, source="ledger", weight=e.weight, share=e.share,
            action=e.action, free_rider=e.free_rider, loo=e.loo, shapley=e.shapley,
            metrics=dict(v.department_metrics.get(e.department, {})) if v else {},
        ))  # fmt: skip
    in_ledger = {e.round_no for e in ledger}
    for round_no, v in sorted(versions.items()):
        if round_no in in_ledger:
            continue
        total = max(1, v.num_samples)
        for dept in sorted({p.department for p in v.participants} & depts):
            n = sum(p.num_samples for p in v.participants if p.department == dept)
            out.append(ContributionOut(
                version_id=v.version_id, round_no=v.round_no, department=dept, node_id=None,
                num_samples=n, sample_share=n / total, source="samples",
                metrics=dict(v.department_metrics.get(dept, {})),
            ))  # fmt: skip
    return sorted(out, key=lambda c: (c.round_no, c.department, c.node_id or ""))
