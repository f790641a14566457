"""Coordinator events as JSON for live views (server-sent events), filtered per department."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from clawfed.coordinator.phases import weighted_mean
from clawfed.coordinator.round_records import RoundReport

#: Events passed on to live views (others, such as debug events, are not).
LIVE_KINDS = frozenset({
    "job_started", "job_completed", "job_failed", "round_started", "round_completed",
    "node_dropped", "update_rejected", "node_joined", "node_lost", "approval_requested",
    "approval_wait", "approval_excluded", "approval_admitted", "approval_changed",
})  # fmt: skip
#: Most events a slow viewer may have queued before it is cut off.
QUEUE_LIMIT = 1000


@dataclass(frozen=True)
class LiveEvent:
    """One event: ``departments`` it reveals something about (empty: none in particular)."""

    kind: str
    job_id: str | None
    departments: frozenset[str]
    data: Mapping[str, Any] = field(default_factory=dict)

    def sse(self) -> str:
        """The event as one server-sent event (``event:`` and one ``data:`` line)."""
        payload = json.dumps({"kind": self.kind, "job_id": self.job_id, **self.data},
                             ensure_ascii=False, separators=(",", ":"))  # fmt: skip
        return f"event: {self.kind}\ndata: {payload}\n\n"


def department_metrics(report: RoundReport) -> dict[str, dict[str, float]]:
    """Sample-weighted metrics of each department's participants in one round."""
    out: dict[str, dict[str, float]] = {}
    for dept in sorted({p.department for p in report.participants}):
        parts = [p for p in report.participants if p.department == dept]
        out[dept] = weighted_mean(
            {p.node_id: p.metrics for p in parts}, {p.node_id: p.num_samples for p in parts}
        )
    return out


def to_live(kind: str, data: Mapping[str, Any], department_of: Mapping[str, str]) -> LiveEvent:
    """An engine or coordinator event as a ``LiveEvent`` (reports become per-department data)."""
    job_id = data.get("job_id")
    job = str(job_id) if job_id is not None else None
    report = data.get("report")
    if kind == "round_completed" and isinstance(report, RoundReport):
        per_dept = department_metrics(report)
        return LiveEvent(kind, job, frozenset(per_dept), {
            "round": report.round_no, "version": str(data.get("version", "")),
            "departments": per_dept, "duration_s": report.duration_s,
            "samples": {d: sum(p.num_samples for p in report.participants if p.department == d)
                        for d in per_dept},
        })  # fmt: skip
    depts: set[str] = set()
    if isinstance(data.get("department"), str):
        depts.add(data["department"])
    node = data.get("node_id")
    if isinstance(node, str) and node in department_of:
        depts.add(department_of[node])
    nodes = data.get("nodes")
    if isinstance(nodes, list):
        depts.update(department_of[n] for n in nodes if isinstance(n, str) and n in department_of)
    plain = {k: v for k, v in data.items() if isinstance(v, str | int | float | bool | list)}
    return LiveEvent(kind, job, frozenset(depts), plain)


class EventBroker:
    """Fans events out to subscribers (one bounded queue each), in the coordinator's loop."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[LiveEvent | None]] = set()

    @property
    def subscribers(self) -> int:
        """How many live views are listening."""
        return len(self._queues)

    def publish(self, event: LiveEvent) -> None:
        """Queue ``event`` for every subscriber; one too slow to keep up is cut off."""
        for queue in list(self._queues):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._queues.discard(queue)

    def close(self) -> None:
        """End every subscription (on shutdown)."""
        for queue in list(self._queues):
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
        self._queues.clear()

    async def subscribe(self, keepalive_s: float = 15.0) -> AsyncIterator[LiveEvent | None]:
        """Events as they come; ``None`` every ``keepalive_s`` of silence (send a comment)."""
        queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(queue)
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), keepalive_s)
                except TimeoutError:
                    yield None
                    continue
                if event is None:
                    return
                yield event
        finally:
            self._queues.discard(queue)
