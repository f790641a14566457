"""RFC 9457 problem details: every API error as ``application/problem+json``."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clawfed.core.errors import (
    ClawfedError,
    ConfigError,
    JobError,
    NotFoundError,
    SecurityError,
    StoreError,
)
from clawfed.governance.policy import PermissionDenied
from clawfed.governance.users import AuthenticationError

PROBLEM_JSON = "application/problem+json"
#: Problem ``type`` URIs are ``urn:clawfed:problem:<slug>``.
TYPE_PREFIX = "urn:clawfed:problem:"


class Problem(Exception):
    """An API error the client can act on; rendered as problem details."""

    def __init__(self, status: int, slug: str, detail: str, title: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    """The ``application/problem+json`` response of ``problem`` for ``request``."""
    body = {
        "type": TYPE_PREFIX + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="clawfed"'} if problem.status == 401 else None
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


def from_error(exc: ClawfedError) -> Problem:
    """The problem an internal error maps to (the catalog at the HTTP boundary)."""
    if isinstance(exc, AuthenticationError):
        return Problem(401, "unauthenticated", f"{exc.detail} ({exc.reason})", "Not authenticated")
    if isinstance(exc, PermissionDenied):
        return Problem(403, "forbidden", exc.decision.reason, "Not allowed")
    if isinstance(exc, NotFoundError):
        return Problem(404, "not-found", str(exc))
    if isinstance(exc, ConfigError):
        return Problem(422, "invalid", str(exc), "Invalid request")
    if isinstance(exc, StoreError | JobError):
        return Problem(409, "conflict", str(exc), "Conflict with the current state")
    if isinstance(exc, SecurityError):
        return Problem(403, "forbidden", str(exc), "Not allowed")
    return Problem(400, "bad-request", str(exc))


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "(body)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` (ours, FastAPI's validation, Starlette's) problem details."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(request, exc)

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ClawfedError)
        return problem_response(request, from_error(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(
            request, Problem(422, "invalid", _validation_detail(exc), "Invalid request")
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404:
            detail = f"no endpoint at {request.url.path}"
        return problem_response(request, Problem(exc.status_code, slug, detail))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(ClawfedError, on_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
