"""``create_app``: the FastAPI app of the REST API (and the dashboard), built per coordinator."""

from __future__ import annotations

from fastapi import FastAPI

from clawfed import __version__
from clawfed.api import routes_federation, routes_governance, routes_jobs
from clawfed.api.context import ApiContext
from clawfed.api.problems import install_problem_handlers


def create_app(ctx: ApiContext, *, dashboard: bool = True) -> FastAPI:
    """The app serving ``ctx``: ``/api/v1/...``, ``/metrics`` and (if asked) the dashboard.

    The OpenAPI schema is at ``/api/v1/openapi.json``; no interactive docs are served
    (they would load scripts from a CDN).
    """
    app = FastAPI(
        title=f"clawfed · {ctx.federation}",
        version=__version__,
        summary="Federated learning across the departments of one enterprise.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    install_problem_handlers(app)
    app.include_router(routes_federation.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_governance.router)
    app.include_router(routes_federation.metrics_router)
    if dashboard:
        from clawfed.dashboard.pages import install_dashboard

        install_dashboard(app)
    return app
