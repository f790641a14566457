"""Dashboard sessions: a random cookie id standing for a user who logged in with a token."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from clawfed.governance._common import now_utc

#: Name of the session cookie.
COOKIE = "clawfed_session"
#: How long a dashboard session lasts without a new login.
SESSION_LIFETIME = timedelta(hours=8)
#: Most sessions kept at once; the oldest is dropped beyond it.
MAX_SESSIONS = 10_000


@dataclass(frozen=True)
class DashboardSession:
    """Who logged in, with which token (a revoked token ends the session), and until when."""

    session_id: str
    user_id: str
    token_id: str
    csrf: str
    expires_at: datetime


class SessionBook:
    """Sessions in memory: they end when the coordinator stops (log in again)."""

    def __init__(self, clock: Callable[[], datetime] = now_utc) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, DashboardSession] = {}

    def open(self, user_id: str, token_id: str) -> DashboardSession:
        """Start a session for ``user_id`` (who proved it with ``token_id``)."""
        session = DashboardSession(
            secrets.token_urlsafe(32), user_id, token_id, secrets.token_urlsafe(24),
            self._clock() + SESSION_LIFETIME,
        )  # fmt: skip
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
                del self._sessions[oldest.session_id]
            self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str | None) -> DashboardSession | None:
        """The live session ``session_id`` names, or None (unknown or expired)."""
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and self._clock() >= session.expires_at:
                del self._sessions[session_id]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        """End a session (log out); unknown ids are ignored."""
        with self._lock:
            self._sessions.pop(session_id or "", None)
