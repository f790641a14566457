"""Helpers shared by the governance tests (a deterministic clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class StepClock:
    """A clock that starts at a fixed instant and moves one second per reading."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def append_many(url: str, actor: str, count: int) -> None:
    """Append ``count`` audit entries as ``actor`` (run in a child process by the tests)."""
    from clawfed.governance import AuditLog, Database

    with Database(url) as db:
        log = AuditLog(db)
        for i in range(count):
            log.append(actor, "node", "heartbeat", "federation", ["credit"], {"i": i}, "ok")
