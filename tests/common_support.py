"""Helpers every test folder uses: a free loopback port, polling with a deadline, API users.

Importable from any test module as ``common_support`` (``pythonpath = ["tests"]`` in the
pytest settings); each folder's own ``*_support`` module builds on it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar

from clawfed.coordinator.workspace import Workspace
from clawfed.governance.audit import AuditLog
from clawfed.governance.policy import Role
from clawfed.governance.users import UserDirectory

T = TypeVar("T")

#: Default wait for processes and servers started by a test.
WAIT_S = 60.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def add_user(
    ws: Workspace, user_id: str, role: Role, department: str | None = None,
    entitlements: Sequence[str] = (),
) -> str:  # fmt: skip
    """Create a user in ``ws``'s store and return a fresh one-day API token of theirs."""
    with ws.database() as db:
        users = UserDirectory(db, audit=AuditLog(db))
        users.create(user_id, role, department=department)
        for job in entitlements:
            users.entitle(user_id, job)
        return users.issue_token(user_id, label="test", expires_in=timedelta(days=1)).token
