"""Who is asking: a bearer API token, or a dashboard session cookie (with a CSRF token)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from clawfed.api.context import ApiContext
from clawfed.api.problems import Problem
from clawfed.api.sessions import COOKIE
from clawfed.core import NotFoundError
from clawfed.governance._common import now_utc
from clawfed.governance.policy import User

#: Header a cookie-authenticated request that changes something must carry.
CSRF_HEADER = "X-CSRF-Token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def context(request: Request) -> ApiContext:
    """The app's ``ApiContext``."""
    ctx = request.app.state.ctx
    assert isinstance(ctx, ApiContext)
    return ctx


Ctx = Annotated[ApiContext, Depends(context)]


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, "unauthenticated", detail, "Not authenticated")


def session_user(request: Request, ctx: ApiContext) -> User | None:
    """The user of the request's session cookie, or None when there is no live session."""
    session = ctx.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    try:
        user = ctx.users.get(session.user_id)
        token = next(t for t in ctx.users.tokens(user.user_id) if t.token_id == session.token_id)
    except (NotFoundError, StopIteration):
        ctx.sessions.close(session.session_id)
        return None
    if user.disabled or not token.active(now_utc()):
        ctx.sessions.close(session.session_id)
        return None
    if request.method not in _SAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise Problem(403, "csrf", f"a change from the dashboard needs the {CSRF_HEADER} "
                          "header of its session; reload the page", "Not allowed")  # fmt: skip
    return user


def current_user(request: Request, ctx: Ctx) -> User:
    """The authenticated user; 401 problem details when there is none."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated("the Authorization header must be 'Bearer <API token>'")
        return ctx.users.authenticate(token.strip())
    user = session_user(request, ctx)
    if user is None:
        raise _unauthenticated(
            "send 'Authorization: Bearer <API token>' (get one with `clawfed tokens issue`)"
        )
    return user


Me = Annotated[User, Depends(current_user)]
