"""Node sessions: the coordinator's end of one bidirectional gRPC stream per node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from grpc import aio

from clawfed.coordinator.gateway import (
    FailureCode,
    TaskFailed,
    TaskKind,
    TaskOutcome,
    TaskRequest,
)
from clawfed.coordinator.update_receiver import PendingTask, UpdateReceiver
from clawfed.core import (
    NodeInfo,
    RejectReason,
    UpdateRejected,
)
from clawfed.core.errors import WireError
from clawfed.wire import values as wire_values
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.broadcast import EncodedModel
from clawfed.wire.chunkwire import ChunkView, parse_node_message
from clawfed.wire.eof import STREAM_END

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
        self._wlock = asyncio.Lock()
        self._pending: dict[str, PendingTask] = {}
        self._rx = UpdateReceiver(info.node_id, hub)
        self.last_seen = time.monotonic()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.datasets: dict[str, str] = {}
        self.task: asyncio.Task[Any] | None = None

    @property
    def busy_receiving(self) -> bool:
        """Receiving an update, or waiting for memory to receive one (no heartbeats then)."""
        return self._rx.receiving is not None or self._rx.awaiting_memory

    @property
    def receiving_progress(self) -> tuple[int, int] | None:
        """(bytes received, bytes announced) of the update being received, else None."""
        pending = self._rx.receiving
        if pending is None or pending.reassembler is None:
            return None
        return pending.reassembler.received_bytes, pending.reassembler.total_bytes

    @property
    def holding_memory(self) -> bool:
        """Whether this session holds one of the hub's memory slots (receiving an update)."""
        return self._rx.holding_memory

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
        pending = PendingTask(request, loop.create_future())
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
            if self._rx.receiving is pending:
                self._rx.end_receiving()

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
                    self._rx.on_chunk(message)
                    continue
                assert isinstance(message, pb.NodeMessage)
                kind = message.WhichOneof("body")
                if kind == "chunk":
                    self._rx.on_chunk(message.chunk)
                    continue
                if self._rx.receiving is not None:
                    self._rx.fail_receiving(
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
        self._rx.close(self.close_reason)
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
                self._rx.discard = result.success.update.payload_id
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
            self._rx.settle(pending, None, 0)
            return
        await self._rx.on_header(pending, success.update)

    def check_stall(self, elapsed_s: float, limit_s: float) -> bool:
        """One tick of the stall watch; True if the update under way was rejected as stalled.

        ``elapsed_s`` is the time since the previous tick, counted only when that tick came
        on time (0 after the event loop was blocked, when unread chunks may be waiting), so
        a busy coordinator never blames its own delay on the sender.
        """
        return self._rx.check_stall(elapsed_s, limit_s)
