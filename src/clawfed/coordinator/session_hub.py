"""The session hub: admits node sessions, keeps the live ones, routes tasks to them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from clawfed import PROTOCOL_VERSION
from clawfed.coordinator.gateway import (
    FailureCode,
    OutboundModel,
    TaskFailed,
    TaskOutcome,
    TaskRequest,
)
from clawfed.coordinator.sessions import NodeSession
from clawfed.core import NodeInfo, Weights
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.broadcast import EncodedModel

#: A sender mid-update must deliver a chunk at least this many heartbeat intervals apart;
#: silence beyond that is a stall, and the update is rejected so its memory slot is freed.
STALL_INTERVALS = 2.0
#: Ticks of the stall watch per heartbeat interval.
_STALL_TICKS_PER_INTERVAL = 4


class SessionHub:
    """All live node sessions; implements the engine's ``NodeGateway``."""

    def __init__(
        self,
        *,
        chunk_size: int,
        max_update_bytes: int,
        max_inflight_updates: int,
        on_change: Callable[[str, NodeInfo], None] | None = None,
    ) -> None:
        self.chunk_size = chunk_size
        self.max_update_bytes = max_update_bytes
        self.memory = asyncio.Semaphore(max_inflight_updates)
        self._sessions: dict[str, NodeSession] = {}
        self._changed = asyncio.Condition()
        self._on_change = on_change

    async def attach(self, session: NodeSession) -> NodeSession | None:
        """Register ``session``; return the older session of the same node, if any."""
        old = self._sessions.get(session.info.node_id)
        self._sessions[session.info.node_id] = session
        async with self._changed:
            self._changed.notify_all()
        if self._on_change is not None:
            self._on_change("joined" if old is None else "replaced", session.info)
        return old

    async def detach(self, session: NodeSession) -> None:
        if self._sessions.get(session.info.node_id) is session:
            del self._sessions[session.info.node_id]
            async with self._changed:
                self._changed.notify_all()
            if self._on_change is not None:
                self._on_change("lost", session.info)

    def get(self, node_id: str) -> NodeSession | None:
        return self._sessions.get(node_id)

    @property
    def memory_slots_in_use(self) -> int:
        """How many sessions hold a memory slot (receive an update) right now."""
        return sum(1 for s in self._sessions.values() if s.holding_memory)

    def sessions(self) -> list[NodeSession]:
        return list(self._sessions.values())

    # ---- NodeGateway ------------------------------------------------------------------
    def live_nodes(self) -> list[NodeInfo]:
        return sorted((s.info for s in self._sessions.values()), key=lambda n: n.node_id)

    def _matching(self, wanted: Sequence[str] | None) -> list[NodeInfo]:
        return [n for n in self.live_nodes() if wanted is None or n.node_id in wanted]

    async def wait_for_nodes(
        self, wanted: Sequence[str] | None, count: int, timeout_s: float
    ) -> list[NodeInfo]:
        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self._matching(wanted)) >= count)

        try:
            await asyncio.wait_for(enough(), timeout_s)
        except TimeoutError:
            pass
        return self._matching(wanted)

    def prepare(self, weights: Weights) -> EncodedModel:
        return EncodedModel(weights, self.chunk_size)

    async def run_task(
        self, node_id: str, request: TaskRequest, model: OutboundModel | None
    ) -> TaskOutcome:
        if model is not None and not isinstance(model, EncodedModel):
            raise TypeError("SessionHub sends only models it prepared itself")
        session = self._sessions.get(node_id)
        if session is None:
            raise TaskFailed(node_id, FailureCode.NOT_CONNECTED, "the node is not connected")
        return await session.run_task(request, model)

    async def cancel(self, node_id: str, task_id: str, reason: str) -> None:
        session = self._sessions.get(node_id)
        if session is not None:
            await session.cancel(task_id, reason)

    async def watch_stalls(self, heartbeat_interval_s: float) -> None:
        """Reject updates whose sender went silent mid-way, freeing their memory slots.

        Runs until cancelled. The limit is ``STALL_INTERVALS`` heartbeat intervals without
        a chunk; only ticks that came on time count, so a blocked event loop (a long
        aggregation step) does not turn into stalls.
        """
        tick = heartbeat_interval_s / _STALL_TICKS_PER_INTERVAL
        limit = STALL_INTERVALS * heartbeat_interval_s
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            elapsed = now - last
            last = now
            on_time = elapsed if elapsed <= 2 * tick else 0.0
            for session in list(self._sessions.values()):
                session.check_stall(on_time, limit)


def check_hello(message: pb.NodeMessage | object) -> pb.Hello:
    """The first message must be a Hello in our protocol version."""
    if not isinstance(message, pb.NodeMessage) or message.WhichOneof("body") != "hello":
        raise ValueError("the first message of a session must be hello")
    return message.hello


def version_goodbye(theirs: int) -> pb.CoordinatorMessage:
    """The Goodbye sent to a node that speaks another protocol version."""
    return pb.CoordinatorMessage(
        goodbye=pb.Goodbye(
            code="protocol_mismatch",
            message=(
                f"protocol version mismatch: coordinator speaks v{PROTOCOL_VERSION}, "
                f"node speaks v{theirs}; run the same clawfed release on both"
            ),
        )
    )
