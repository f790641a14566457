"""Node sessions: the coordinator's end of one bidirectional gRPC stream per node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grpc import aio

from clawfed.coordinator.gateway import (
    FailureCode,
    TaskFailed,
    TaskKind,
    TaskOutcome,
    TaskRequest,
    deliver,
    validate_returned,
)
from clawfed.core import (
    NodeInfo,
    PayloadError,
    RejectReason,
    UpdateRejected,
    Weights,
)
from clawfed.core.buffers import shared_pool
from clawfed.core.errors import WireError
from clawfed.wire import values as wire_values
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.broadcast import EncodedModel
from clawfed.wire.chunkwire import ChunkView, parse_node_message
from clawfed.wire.eof import STREAM_END
from clawfed.wire.payload import ChunkLike, Reassembler

if TYPE_CHECKING:
    from clawfed.coordinator.session_hub import SessionHub

log = logging.getLogger("clawfed.coordinator.sessions")

_KIND_TO_PB = {
    TaskKind.FIT: pb.TASK_KIND_FIT,
    TaskKind.EVALUATE: pb.TASK_KIND_EVALUATE,
    TaskKind.INIT: pb.TASK_KIND_INIT,
    TaskKind.STATS: pb.TASK_KIND_STATS,
    TaskKind.QUERY: pb.TASK_KIND_QUERY,
    TaskKind.SECAGG_ADVERTISE: pb.TASK_KIND_SECAGG_ADVERTISE,
    TaskKind.SECAGG_SHARE: pb.TASK_KIND_SECAGG_SHARE,
    TaskKind.SECAGG_MASK: pb.TASK_KIND_SECAGG_MASK,
    TaskKind.SECAGG_UNMASK: pb.TASK_KIND_SECAGG_UNMASK,
}


#: The Session stream's request deserializer: chunks come back as zero-copy ``ChunkView``s.
deserialize_node_message = parse_node_message

#: gRPC server options for the Session streams. Flow-control windows stay at 1 MiB per stream
#: instead of growing by BDP probing: a session that is not reading (waiting for a memory
#: slot) then holds back its node through HTTP/2 flow control rather than through gRPC's
#: buffers, which at 10 nodes x 40 MB updates held ~150 MB more at the peak. DATA frames may
#: be 1 MiB (HTTP/2's default is 16 KiB), so a chunk crosses in one or two frames.
SESSION_SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 1 << 20),
    ("grpc.http2.max_frame_size", 1 << 20),
)


SessionContext = aio.ServicerContext[pb.NodeMessage | ChunkView, pb.CoordinatorMessage | bytes]


@dataclass
class _Pending:
    request: TaskRequest
    future: asyncio.Future[TaskOutcome]
    reassembler: Reassembler | None = None
    num_samples: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


class NodeSession:
    """The coordinator's end of one node's stream."""

    def __init__(
        self,
        info: NodeInfo,
        context: aio.ServicerContext[Any, Any],
        hub: SessionHub,
    ) -> None:
        self.info = info
        self.session_id = uuid.uuid4().hex
        # what the Session stream's (de)serializers above read and write
        self._ctx: SessionContext = context
        self._hub = hub
        self._wlock = asyncio.Lock()
        self._pending: dict[str, _Pending] = {}
        self._receiving: _Pending | None = None
        self._announced: _Pending | None = None  # header in, waiting for a memory slot
        self._chunks_seen = 0  # chunks read so far, for the stall watch
        self._stall_mark = 0  # ``_chunks_seen`` at the stall watch's last tick
        self._stall_idle_s = 0.0  # time without a chunk while receiving (on-time ticks only)
        self._discard: str | None = None  # payload id whose chunks are thrown away
        self._holding_memory = False
        self._awaiting_memory = False
        self.last_seen = time.monotonic()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.datasets: dict[str, str] = {}
        self.task: asyncio.Task[Any] | None = None

    @property
    def busy_receiving(self) -> bool:
        """Receiving an update, or waiting for memory to receive one (no heartbeats then)."""
        return self._receiving is not None or self._awaiting_memory

    @property
    def receiving_progress(self) -> tuple[int, int] | None:
        """(bytes received, bytes announced) of the update being received, else None."""
        pending = self._receiving
        if pending is None or pending.reassembler is None:
            return None
        return pending.reassembler.received_bytes, pending.reassembler.total_bytes

    @property
    def holding_memory(self) -> bool:
        """Whether this session holds one of the hub's memory slots (receiving an update)."""
        return self._holding_memory

    @property
    def write_busy(self) -> bool:
        """Something is being written to the node right now."""
        return self._wlock.locked()

    # ---- writing ----------------------------------------------------------------------
    async def send(self, message: pb.CoordinatorMessage) -> None:
        async with self._wlock:
            await self._ctx.write(message)

    async def run_task(self, request: TaskRequest, model: EncodedModel | None) -> TaskOutcome:
        if self.closed.is_set():
            raise TaskFailed(self.info.node_id, FailureCode.DISCONNECTED, self.close_reason)
        loop = asyncio.get_running_loop()
        pending = _Pending(request, loop.create_future())
        self._pending[request.task_id] = pending
        task = pb.Task(
            task_id=request.task_id,
            job_id=request.job_id,
            round=request.round_no,
            kind=_KIND_TO_PB[request.kind],
            deadline_unix=request.deadline_unix,
        )
        wire_values.fill_values(task.config, request.config)
        if model is not None:
            task.weights.CopyFrom(model.header)
        # Taken before the first await: the sends of one round, started together, all hold
        # the lease before any of them ends, so the messages are laid out once.
        lease = model.lease() if model is not None else contextlib.nullcontext(())
        try:
            try:
                with lease as messages:
                    async with self._wlock:
                        await self._ctx.write(pb.CoordinatorMessage(task=task))
                        for raw in messages:
                            await self._ctx.write(raw)
            except Exception as exc:
                # A node gone mid-write: grpc raises AioRpcError, RuntimeError, or its C
                # core's ExecuteBatchError (no public class), depending on when it noticed.
                raise TaskFailed(
                    self.info.node_id, FailureCode.DISCONNECTED, f"stream broke: {exc}"
                ) from exc
            return await pending.future
        except (aio.AioRpcError, asyncio.InvalidStateError, RuntimeError) as exc:
            raise TaskFailed(
                self.info.node_id, FailureCode.DISCONNECTED, f"stream broke: {exc}"
            ) from exc
        finally:
            self._pending.pop(request.task_id, None)
            if self._receiving is pending:
                self._end_receiving()

    async def cancel(self, task_id: str, reason: str) -> None:
        pending = self._pending.get(task_id)
        if pending is None:
            return
        if pending.reassembler is not None and not pending.future.done():
            r = pending.reassembler
            pending.future.set_exception(
                UpdateRejected(
                    RejectReason.TRUNCATED,
                    f"payload stopped at {r.received_bytes} of {r.total_bytes} bytes ({reason})",
                )
            )
        elif not pending.future.done():
            pending.future.set_exception(
                TaskFailed(self.info.node_id, FailureCode.CANCELLED, reason)
            )
        if not self.closed.is_set():
            try:
                await self.send(
                    pb.CoordinatorMessage(cancel=pb.CancelTask(task_id=task_id, reason=reason))
                )
            except (aio.AioRpcError, RuntimeError) as exc:
                log.debug("cancel to %s not delivered: %s", self.info.node_id, exc)

    # ---- reading ----------------------------------------------------------------------
    async def read_loop(self) -> None:
        """Read until the node hangs up; route results and chunks to pending tasks."""
        try:
            while True:
                message = await self._ctx.read()
                if message is STREAM_END:
                    self.close_reason = "the node closed the stream"
                    break
                self.last_seen = time.monotonic()
                if isinstance(message, ChunkView):
                    self._chunks_seen += 1
                    self._on_chunk(message)
                    continue
                assert isinstance(message, pb.NodeMessage)
                kind = message.WhichOneof("body")
                if kind == "chunk":
                    self._chunks_seen += 1
                    self._on_chunk(message.chunk)
                    continue
                if self._receiving is not None:
                    self._fail_receiving(
                        RejectReason.TRUNCATED,
                        f"a {kind} message arrived before the update's last chunk",
                    )
                if kind == "result":
                    await self._on_result(message.result)
                elif kind == "goodbye":
                    self.close_reason = f"node said goodbye: {message.goodbye.message}"
                    break
        except aio.AioRpcError as exc:
            self.close_reason = f"stream error: {exc.code().name}"
        except WireError as exc:  # from the request deserializer: bytes that are no message
            self.close_reason = str(exc)
            log.warning("%s: %s", self.info.node_id, exc)
        except asyncio.CancelledError:
            if not self.close_reason:
                self.close_reason = (
                    "the node hung up (stream cancelled)"
                    if self._ctx.cancelled()
                    else "the stream was cancelled (the node hung up or the coordinator stopped)"
                )
            raise
        finally:
            self._close()

    def _close(self) -> None:
        if self._receiving is not None:
            self._fail_receiving(
                RejectReason.TRUNCATED, f"the stream ended mid-update ({self.close_reason})"
            )
        announced = self._announced
        if announced is not None and not announced.future.done():
            # the header arrived, the bytes did not: the update is cut off, not merely absent
            announced.future.set_exception(
                UpdateRejected(
                    RejectReason.TRUNCATED,
                    "the stream ended after the update's header, before its bytes "
                    f"(while waiting for a memory slot; {self.close_reason})",
                )
            )
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(
                    TaskFailed(
                        self.info.node_id,
                        FailureCode.DISCONNECTED,
                        self.close_reason or "the session ended",
                    )
                )
        self.closed.set()

    async def _on_result(self, result: pb.TaskResult) -> None:
        pending = self._pending.get(result.task_id)
        outcome = result.WhichOneof("outcome")
        if pending is None or pending.future.done():
            if outcome == "success" and result.success.HasField("update"):
                self._discard = result.success.update.payload_id
            log.info(
                "%s: result for unknown or finished task %s ignored",
                self.info.node_id,
                result.task_id[:12],
            )
            return
        if outcome == "failure":
            pending.future.set_exception(
                TaskFailed(
                    self.info.node_id,
                    result.failure.code or FailureCode.NODE_ERROR,
                    result.failure.message,
                )
            )
            return
        if outcome != "success":
            pending.future.set_exception(
                TaskFailed(self.info.node_id, FailureCode.NODE_ERROR, "empty result")
            )
            return
        success = result.success
        pending.num_samples = int(success.num_samples)
        pending.metrics = dict(success.metrics)
        if not success.HasField("update"):
            self._deliver(pending, None, 0)
            return
        header = success.update
        limit = self._hub.max_update_bytes
        if header.total_bytes > limit:
            self._discard = header.payload_id
            pending.future.set_exception(
                UpdateRejected(
                    RejectReason.OVERSIZE,
                    f"update announces {header.total_bytes} bytes, the limit is {limit}",
                )
            )
            return
        self._awaiting_memory = True
        self._announced = pending
        try:
            await self._hub.memory.acquire()  # back-pressure: stop reading until there is room
        finally:
            self._awaiting_memory = False
        self._announced = None  # left set when cancelled: ``_close`` rejects it as truncated
        self._holding_memory = True
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
            self._discard = header.payload_id
            pending.future.set_exception(UpdateRejected(exc.reason, exc.detail))
            return
        self._receiving = pending
        if pending.reassembler.done:
            self._complete(pending)

    def _on_chunk(self, chunk: ChunkLike) -> None:
        pending = self._receiving
        if pending is None or pending.reassembler is None:
            if chunk.payload_id != self._discard:
                log.info(
                    "%s: stray chunk of payload %s ignored",
                    self.info.node_id,
                    chunk.payload_id[:12],
                )
            return
        try:
            pending.reassembler.add(chunk)
        except PayloadError as exc:
            self._discard = pending.reassembler.payload_id
            self._fail_receiving(exc.reason, exc.detail)
            return
        if pending.reassembler.done:
            self._complete(pending)

    def _complete(self, pending: _Pending) -> None:
        assert pending.reassembler is not None
        reassembler = pending.reassembler
        try:
            weights = reassembler.finish()
            validate_returned(weights, pending.request.expected)
        except PayloadError as exc:
            self._fail_receiving(exc.reason, exc.detail)
            return
        except UpdateRejected as exc:
            self._fail_receiving(exc.reason, exc.detail)
            return
        self._end_receiving()
        self._deliver(pending, weights, reassembler.total_bytes)

    def _deliver(self, pending: _Pending, weights: Weights | None, nbytes: int) -> None:
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
                self.info.node_id, max(pending.num_samples, 0), pending.metrics, weights, nbytes
            )
        except ValueError as exc:
            pending.future.set_exception(
                TaskFailed(self.info.node_id, FailureCode.NODE_ERROR, str(exc))
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
        """One tick of the stall watch; True if the update under way was rejected as stalled.

        ``elapsed_s`` is the time since the previous tick, counted only when that tick came
        on time (0 after the event loop was blocked, when unread chunks may be waiting), so
        a busy coordinator never blames its own delay on the sender.
        """
        pending = self._receiving
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
        self._discard = r.payload_id  # chunks that still come are dropped quietly
        self._fail_receiving(
            RejectReason.TRUNCATED,
            f"the sender stalled mid-update: no chunk for {self._stall_idle_s:.1f} s "
            f"(limit {limit_s:g} s) after {r.received_bytes} of {r.total_bytes} bytes; "
            "its memory slot was released",
        )
        log.warning("%s: update stalled mid-way, rejected as truncated", self.info.node_id)
        return True

    def _fail_receiving(self, reason: RejectReason, detail: str) -> None:
        pending = self._receiving
        self._end_receiving()
        if pending is not None and not pending.future.done():
            pending.future.set_exception(UpdateRejected(reason, detail))

    def _end_receiving(self) -> None:
        if self._receiving is not None:
            self._receiving.reassembler = None
        self._receiving = None
        self._release_memory()

    def _release_memory(self) -> None:
        if self._holding_memory:
            self._holding_memory = False
            self._hub.memory.release()
