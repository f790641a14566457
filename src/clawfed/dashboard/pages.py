"""The dashboard's routes: login, the role-aware pages, live events (SSE) and static files."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import StreamingResponse

from clawfed.api.auth import Ctx, session_user
from clawfed.api.context import ApiContext
from clawfed.api.events import LiveEvent
from clawfed.api.sessions import COOKIE, SESSION_LIFETIME
from clawfed.core import ClawfedError, NotFoundError
from clawfed.dashboard import views
from clawfed.dashboard.transcripts import transcript
from clawfed.governance.policy import Action, Resource, User, audit_decision, decide
from clawfed.governance.users import AuthenticationError

STATIC = Path(__file__).resolve().parent / "static"
_env = Environment(
    loader=PackageLoader("clawfed.dashboard", "templates"), autoescape=select_autoescape()
)
router = APIRouter(include_in_schema=False)
_FORM_LIMIT = 4096


class _Denied(Exception):
    """The viewer may not open a page; ``reason`` is the policy's."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _page(ctx: ApiContext, me: User, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    html = _env.get_template(name).render(
        me=me, nav=views.nav(ctx, me), federation=ctx.federation, csrf=values.pop("csrf", ""),
        **values,
    )  # fmt: skip
    return HTMLResponse(html, status_code=status)


def _viewer(request: Request, ctx: ApiContext) -> User | None:
    try:
        return session_user(request, ctx)
    except ClawfedError:
        return None


def _need(ctx: ApiContext, me: User, action: Action, resource: Resource) -> None:
    decision = decide(me, action, resource)
    if not decision.allowed:
        audit_decision(ctx.audit, me, action, resource, decision, detail={"via": "dashboard"})
        raise _Denied(decision.reason)


def _csrf(request: Request, ctx: ApiContext) -> str:
    session = ctx.sessions.get(request.cookies.get(COOKIE))
    return session.csrf if session else ""


def _login_redirect() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


@router.get("/")
def root() -> RedirectResponse:
    """The dashboard's home."""
    return RedirectResponse("/dashboard", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    """The login form (an API token)."""
    return HTMLResponse(_env.get_template("login.html").render(error=""))


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form body (python-multipart is not a dependency)."""
    body = await request.body()
    if len(body) > _FORM_LIMIT:
        return {}
    pairs = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    return {k: v[0] for k, v in pairs.items() if v}


@router.post("/login")
async def login(request: Request, ctx: Ctx) -> Response:
    """Check the token and open a session (cookie); back to the form on failure."""
    token = (await _form(request)).get("token", "")
    try:
        user = ctx.users.authenticate(token.strip())
    except AuthenticationError as exc:
        html = _env.get_template("login.html").render(error=f"{exc.detail} ({exc.reason})")
        return HTMLResponse(html, status_code=401)
    token_id = token.strip().split("_")[1]
    session = ctx.sessions.open(user.user_id, token_id)
    ctx.audit.append(user.user_id, user.role.value, "dashboard.login", f"user:{user.user_id}",
                     [], {"token": f"cfd_{token_id}"}, "ok")  # fmt: skip
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(
        COOKIE, session.session_id, max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True, samesite="strict", path="/",
    )  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request, ctx: Ctx) -> Response:
    """End the session."""
    csrf = (await _form(request)).get("csrf", "")
    session = ctx.sessions.get(request.cookies.get(COOKIE))
    if session is not None and hmac.compare_digest(csrf.encode(), session.csrf.encode()):
        ctx.sessions.close(session.session_id)
    response = _login_redirect()
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/dashboard", response_class=HTMLResponse)
def home(request: Request, ctx: Ctx) -> Response:
    """The overview: nodes with liveness and department, and jobs (as the role allows)."""
    me = _viewer(request, ctx)
    if me is None:
        return _login_redirect()
    nav = views.nav(ctx, me)
    return _page(
        ctx, me, "overview.html", csrf=_csrf(request, ctx),
        nodes=views.visible_nodes(ctx, me) if nav.overview else [],
        jobs=views.visible_jobs(ctx, me) if nav.overview else [],
    )  # fmt: skip


@router.get("/dashboard/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, ctx: Ctx) -> Response:
    """A job: status, rounds, and live per-department charts."""
    me = _viewer(request, ctx)
    if me is None:
        return _login_redirect()
    job = ctx.job(job_id)
    view = ctx.job_slice(me, job)
    if view is None:
        _need(ctx, me, Action.VIEW_JOB, Resource.job(job_id, ctx.job_departments(job)))
        raise NotFoundError(job_id)
    depts, whole = view
    rounds = ctx.jobs.rounds(job_id)
    chart = views.chart_series(ctx.registry.list(job_id), depts)
    return _page(
        ctx, me, "job.html", csrf=_csrf(request, ctx), job=job, depts=sorted(depts),
        whole=whole, rounds=rounds, chart=json.dumps(chart),
        may_cancel=ctx.allows(me, Action.CANCEL_JOB, Resource.job(job_id, depts)),
    )  # fmt: skip


@router.get("/dashboard/jobs/{job_id}/versions", response_class=HTMLResponse)
def versions_page(
    job_id: str, request: Request, ctx: Ctx,
    a: Annotated[str | None, Query(max_length=200)] = None,
    b: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:  # fmt: skip
    """A job's versions, their lineage graph and, for two of them, the metric diff."""
    me = _viewer(request, ctx)
    if me is None:
        return _login_redirect()
    job = ctx.job(job_id)
    view = ctx.job_slice(me, job, Action.VIEW_VERSIONS)
    if view is None:
        _need(ctx, me, Action.VIEW_VERSIONS, Resource.job(job_id, ctx.job_departments(job)))
        raise NotFoundError(job_id)
    depts, whole = view
    versions = ctx.registry.list(job_id)
    diff = None
    if a and b:
        va, vb = ctx.registry.get(a), ctx.registry.get(b)
        diff = views.version_diff(va, vb, depts, whole)
    return _page(
        ctx, me, "versions.html", job=job, versions=versions, depts=depts, whole=whole,
        graph=json.dumps(views.lineage_graph(versions)), diff=diff, a=a, b=b,
    )  # fmt: skip


@router.get("/dashboard/jobs/{job_id}/contributions", response_class=HTMLResponse)
def contributions_page(job_id: str, request: Request, ctx: Ctx) -> Response:
    """Each department's part in each version."""
    me = _viewer(request, ctx)
    if me is None:
        return _login_redirect()
    from clawfed.api.routes_jobs import contributions

    rows = contributions(job_id, ctx, me)
    return _page(ctx, me, "contributions.html", job_id=job_id, rows=rows)


@router.get("/dashboard/approvals", response_class=HTMLResponse)
def approvals_page(request: Request, ctx: Ctx) -> Response:
    """The approvals inbox, with approve and revoke buttons where the viewer may use them."""
    me = _viewer(request, ctx)
    if me is None:
        return _login_redirect()
    if not views.nav(ctx, me).approvals:
        _need(ctx, me, Action.VIEW_APPROVALS, Resource.audit([me.department or "*"]))
    return _page(ctx, me, "approvals.html", csrf=_csrf(request, ctx),
                 items=views.visible_approvals(ctx, me))  # fmt: skip


@router.get("/dashboard/audit", response_class=HTMLResponse)
def audit_page(request: Request, ctx: Ctx) -> Response:
    """The audit log (a head: their department's entries) and the chain's verification."""
    me = _viewer(request, ctx)
    if me is None:
        return _login_redirect()
    whole = ctx.allows(me, Action.VIEW_AUDIT, Resource.audit())
    dept = None if whole else me.department
    _need(ctx, me, Action.VIEW_AUDIT, Resource.audit([dept] if dept else []))
    records = ctx.audit.list(None, dept, None, limit=200, newest_first=True)
    verified = None
    if ctx.allows(me, Action.VERIFY_AUDIT, Resource.audit()):
        verified = ctx.audit.verify()
    return _page(ctx, me, "audit.html", records=records, verified=verified, department=dept)


@router.get("/dashboard/chat", response_class=HTMLResponse)
def chat_page(request: Request, ctx: Ctx) -> Response:
    """What the chat bot sent: to the viewer (everyone's for a data admin)."""
    me = _viewer(request, ctx)
    if me is None:
        return _login_redirect()
    _need(ctx, me, Action.VIEW_CHAT_TRANSCRIPT, Resource.transcript(me.user_id))
    everyone = ctx.allows(me, Action.VIEW_CHAT_TRANSCRIPT, Resource.transcript("*"))
    lines = transcript(ctx.db, None if everyone else me.user_id)
    return _page(ctx, me, "chat.html", lines=lines, everyone=everyone)


@router.get("/dashboard/services", response_class=HTMLResponse)
def services_page(request: Request, ctx: Ctx) -> Response:
    """The model services the viewer may use, with a form to get predictions."""
    me = _viewer(request, ctx)
    if me is None:
        return _login_redirect()
    jobs = [
        j for j in ctx.jobs.list()
        if ctx.allows(me, Action.USE_MODEL_SERVICE, Resource.model_service(j.job_id))
    ]  # fmt: skip
    features = {}
    for j in jobs:
        spec = ctx.spec(j)
        features[j.job_id] = list(spec.data.features) if spec.data else []
    return _page(ctx, me, "services.html", csrf=_csrf(request, ctx), jobs=jobs,
                 features=features)  # fmt: skip


def _visible(ctx: ApiContext, me: User, event: LiveEvent) -> LiveEvent | None:
    """``event`` cut to what ``me`` may see, or None."""
    if event.job_id is None:
        own = event.departments <= {me.department} if me.department else False
        whole = ctx.allows(me, Action.VIEW_OVERVIEW, Resource.overview(event.departments))
        return event if whole or (own and event.departments) else None
    try:
        view = ctx.job_slice(me, ctx.job(event.job_id))
    except ClawfedError:
        return None
    if view is None:
        return None
    depts, whole = view
    if whole:
        return event
    if not event.departments & depts:
        return None
    data = dict(event.data)
    for key in ("departments", "samples"):
        per = data.get(key)
        if isinstance(per, dict):
            data[key] = {d: m for d, m in per.items() if d in depts}
    return LiveEvent(event.kind, event.job_id, event.departments & depts, data)


@router.get("/dashboard/events")
async def events(request: Request, ctx: Ctx) -> Response:
    """Server-sent events: rounds, nodes and approvals as they happen, as the role may see."""
    me = _viewer(request, ctx)
    if me is None:
        return Response("log in first", status_code=401, media_type="text/plain")

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for event in ctx.broker.subscribe():
            if event is None:
                yield ": keepalive\n\n"
                continue
            shown = _visible(ctx, me, event)
            if shown is not None:
                yield shown.sse()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})  # fmt: skip


def _plotly_js() -> Path:
    import plotly  # type: ignore[import-untyped]

    return Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    """plotly.js from the installed ``plotly`` package (no CDN)."""
    return FileResponse(_plotly_js(), media_type="text/javascript")


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard's routes, static files and its 403 page to ``app``."""

    async def on_denied(request: Request, exc: Exception) -> HTMLResponse:
        assert isinstance(exc, _Denied)
        ctx = request.app.state.ctx
        me = _viewer(request, ctx)
        if me is None:
            return HTMLResponse("log in first", status_code=401)
        return _page(ctx, me, "denied.html", status=403, reason=exc.reason)

    app.add_exception_handler(_Denied, on_denied)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
