"""Receiving a node's updates: the memory slot, chunk reassembly and the stall watch."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clawfed.coordinator.gateway import (
    FailureCode,
    TaskFailed,
    TaskKind,
    TaskOutcome,
    TaskRequest,
    deliver,
    validate_returned,
)
from clawfed.core import PayloadError, RejectReason, UpdateRejected, Weights
from clawfed.core.buffers import shared_pool
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.payload import ChunkLike, Reassembler

if TYPE_CHECKING:
    from clawfed.coordinator.session_hub import SessionHub

log = logging.getLogger("clawfed.coordinator.update_receiver")


@dataclass
class PendingTask:
    """A task sent to a node and waiting for its result (and the update that may come with it)."""

    request: TaskRequest
    future: asyncio.Future[TaskOutcome]
    reassembler: Reassembler | None = None
    num_samples: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


class UpdateReceiver:
    """One node session's incoming updates, one at a time, each in a memory slot of the hub."""

    def __init__(self, node_id: str, hub: SessionHub) -> None:
        self._node_id = node_id
        self._hub = hub
        self.receiving: PendingTask | None = None
        self._announced: PendingTask | None = None  # header in, waiting for a memory slot
        self._chunks_seen = 0  # chunks read so far, for the stall watch
        self._stall_mark = 0  # ``_chunks_seen`` at the stall watch's last tick
        self._stall_idle_s = 0.0  # time without a chunk while receiving (on-time ticks only)
        self.discard: str | None = None  # payload id whose chunks are thrown away
        self.holding_memory = False
        self.awaiting_memory = False

    async def on_header(self, pending: PendingTask, header: pb.PayloadHeader) -> None:
        """Check an update's header, wait for a memory slot, then start reassembling it."""
        limit = self._hub.max_update_bytes
        if header.total_bytes > limit:
            self.discard = header.payload_id
            pending.future.set_exception(
                UpdateRejected(
                    RejectReason.OVERSIZE,
                    f"update announces {header.total_bytes} bytes, the limit is {limit}",
                )
            )
            return
        self.awaiting_memory = True
        self._announced = pending
        try:
            await self._hub.memory.acquire()  # back-pressure: stop reading until there is room
        finally:
            self.awaiting_memory = False
        self._announced = None  # left set when cancelled: ``close`` rejects it as truncated
        self.holding_memory = True
        self._stall_mark = self._chunks_seen
        self._stall_idle_s = 0.0
        try:
            pending.reassembler = Reassembler(
                header,
                max_total_bytes=limit,
                expected=pending.request.expected,
                pool=shared_pool(),  # the pool the FedAvg result also draws on
            )
        except PayloadError as exc:
            self._release_memory()
            self.discard = header.payload_id
            pending.future.set_exception(UpdateRejected(exc.reason, exc.detail))
            return
        self.receiving = pending
        if pending.reassembler.done:
            self._complete(pending)

    def on_chunk(self, chunk: ChunkLike) -> None:
        """Add one chunk of the update under way (or drop a stray one)."""
        self._chunks_seen += 1
        pending = self.receiving
        if pending is None or pending.reassembler is None:
            if chunk.payload_id != self.discard:
                log.info(
                    "%s: stray chunk of payload %s ignored",
                    self._node_id,
                    chunk.payload_id[:12],
                )
            return
        try:
            pending.reassembler.add(chunk)
        except PayloadError as exc:
            self.discard = pending.reassembler.payload_id
            self.fail_receiving(exc.reason, exc.detail)
            return
        if pending.reassembler.done:
            self._complete(pending)

    def _complete(self, pending: PendingTask) -> None:
        assert pending.reassembler is not None
        reassembler = pending.reassembler
        try:
            weights = reassembler.finish()
            validate_returned(weights, pending.request.expected)
        except PayloadError as exc:
            self.fail_receiving(exc.reason, exc.detail)
            return
        except UpdateRejected as exc:
            self.fail_receiving(exc.reason, exc.detail)
            return
        self.end_receiving()
        self.settle(pending, weights, reassembler.total_bytes)

    def settle(self, pending: PendingTask, weights: Weights | None, nbytes: int) -> None:
        """Resolve ``pending`` with its outcome, or with why the outcome is refused."""
        if pending.num_samples <= 0 and pending.request.kind == TaskKind.FIT:
            pending.future.set_exception(
                UpdateRejected(
                    RejectReason.BAD_SAMPLE_COUNT,
                    f"num_samples must be > 0, got {pending.num_samples}",
                )
            )
            return
        try:
            outcome = TaskOutcome(
                self._node_id, max(pending.num_samples, 0), pending.metrics, weights, nbytes
            )
        except ValueError as exc:
            pending.future.set_exception(
                TaskFailed(self._node_id, FailureCode.NODE_ERROR, str(exc))
            )
            return
        if pending.future.done():
            return
        try:
            outcome = deliver(pending.request, outcome)
        except Exception as exc:  # the consumer's verdict (or bug) fails this task only
            pending.future.set_exception(exc)
            return
        pending.future.set_result(outcome)

    def check_stall(self, elapsed_s: float, limit_s: float) -> bool:
        """One tick of the stall watch (see ``NodeSession.check_stall``)."""
        pending = self.receiving
        if pending is None or pending.reassembler is None:
            return False
        if self._chunks_seen != self._stall_mark:
            self._stall_mark = self._chunks_seen
            self._stall_idle_s = 0.0
            return False
        self._stall_idle_s += elapsed_s
        if self._stall_idle_s <= limit_s:
            return False
        r = pending.reassembler
        self.discard = r.payload_id  # chunks that still come are dropped quietly
        self.fail_receiving(
            RejectReason.TRUNCATED,
            f"the sender stalled mid-update: no chunk for {self._stall_idle_s:.1f} s "
            f"(limit {limit_s:g} s) after {r.received_bytes} of {r.total_bytes} bytes; "
            "its memory slot was released",
        )
        log.warning("%s: update stalled mid-way, rejected as truncated", self._node_id)
        return True

    def close(self, reason: str) -> None:
        """The stream ended: reject an update under way or announced as truncated."""
        if self.receiving is not None:
            self.fail_receiving(RejectReason.TRUNCATED, f"the stream ended mid-update ({reason})")
        announced = self._announced
        if announced is not None and not announced.future.done():
            # the header arrived, the bytes did not: the update is cut off, not merely absent
            announced.future.set_exception(
                UpdateRejected(
                    RejectReason.TRUNCATED,
                    "the stream ended after the update's header, before its bytes "
                    f"(while waiting for a memory slot; {reason})",
                )
            )

    def fail_receiving(self, reason: RejectReason, detail: str) -> None:
        """Reject the update under way with ``reason`` and free its memory slot."""
        pending = self.receiving
        self.end_receiving()
        if pending is not None and not pending.future.done():
            pending.future.set_exception(UpdateRejected(reason, detail))

    def end_receiving(self) -> None:
        """Stop receiving (the update is done or given up) and free the memory slot."""
        if self.receiving is not None:
            self.receiving.reassembler = None
        self.receiving = None
        self._release_memory()

    def _release_memory(self) -> None:
        if self.holding_memory:
            self.holding_memory = False
            self._hub.memory.release()
