"""A hostile node for the tests: the real handshake, then malformed or truncated updates."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from grpc import aio
from integration_support import WAIT_S, channel_credentials

from clawfed import PROTOCOL_VERSION
from clawfed.core import RejectReason, Weights
from clawfed.node.dispatch import DispatchRunner
from clawfed.security.kit import load_kit
from clawfed.wire import Reassembler, decode_values, encode
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire._proto import federation_pb2_grpc as pb_grpc
from clawfed.wire.eof import STREAM_END


class Misbehaviour(StrEnum):
    """How a hostile node answers a fit task."""

    WRONG_NAME = "wrong_name"
    WRONG_SHAPE = "wrong_shape"
    WRONG_DTYPE = "wrong_dtype"
    NAN = "nan"
    INF = "inf"
    DIGEST_MISMATCH = "digest_mismatch"
    STOP_THEN_HEARTBEAT = "stop_then_heartbeat"
    STOP_THEN_MESSAGE = "stop_then_message"
    STOP_THEN_DISCONNECT = "stop_then_disconnect"
    CHUNK_PAST_END = "chunk_past_end"
    ANNOUNCED_OVERSIZE = "announced_oversize"
    ZERO_SAMPLES = "zero_samples"
    STOP_THEN_SILENCE = "stop_then_silence"


#: The rejection the coordinator must record for each misbehaviour (but silence: see the
#: tests of a node that stalls mid-update).
EXPECTED_REJECTION: Mapping[Misbehaviour, RejectReason] = {
    Misbehaviour.WRONG_NAME: RejectReason.UNKNOWN_TENSOR,
    Misbehaviour.WRONG_SHAPE: RejectReason.SHAPE_MISMATCH,
    Misbehaviour.WRONG_DTYPE: RejectReason.DTYPE_MISMATCH,
    Misbehaviour.NAN: RejectReason.NON_FINITE,
    Misbehaviour.INF: RejectReason.NON_FINITE,
    Misbehaviour.DIGEST_MISMATCH: RejectReason.DIGEST_MISMATCH,
    Misbehaviour.STOP_THEN_HEARTBEAT: RejectReason.TRUNCATED,
    Misbehaviour.STOP_THEN_MESSAGE: RejectReason.TRUNCATED,
    Misbehaviour.STOP_THEN_DISCONNECT: RejectReason.TRUNCATED,
    Misbehaviour.CHUNK_PAST_END: RejectReason.OVERSIZE,
    Misbehaviour.ANNOUNCED_OVERSIZE: RejectReason.OVERSIZE,
    Misbehaviour.ZERO_SAMPLES: RejectReason.BAD_SAMPLE_COUNT,
}

#: Chunk size of the hostile node's updates: small, so a 4 KB update takes several chunks.
HOSTILE_CHUNK = 1024


class HostileNode:
    """A node client that completes the real handshake, then answers fit tasks wrongly.

    It speaks the protocol itself (no ``NodeAgent``): hello, welcome, heartbeats, honest
    answers to init tasks, and for every fit task the update ``behaviour`` describes.
    """

    def __init__(
        self,
        kit: Path,
        behaviour: Misbehaviour,
        *,
        max_update_bytes: int,
        answer_delay_s: float = 0.0,
    ) -> None:
        self.kit = load_kit(kit)
        self.behaviour = behaviour
        self.max_update_bytes = max_update_bytes
        self.answer_delay_s = answer_delay_s
        self.silent = False
        self.welcomed = asyncio.Event()
        self.fit_tasks = 0
        self._wlock = asyncio.Lock()
        self._call: Any = None
        self._interval = 0.5

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the session until ``stop`` is set (or the behaviour hangs up)."""
        creds = channel_credentials(
            self.kit.ca_cert.encode(), self.kit.cert.encode(), self.kit.key.encode()
        )
        async with aio.secure_channel(self.kit.coordinator, creds) as channel:
            self._call = pb_grpc.FederationStub(channel).Session()
            await self._write(pb.NodeMessage(hello=pb.Hello(protocol_version=PROTOCOL_VERSION)))
            first = await asyncio.wait_for(self._call.read(), WAIT_S)
            if not isinstance(first, pb.CoordinatorMessage) or not first.HasField("welcome"):
                raise AssertionError(f"hostile node {self.kit.node_id} was not welcomed: {first}")
            self._interval = first.welcome.heartbeat_interval_s
            self.welcomed.set()
            tasks = [
                asyncio.create_task(self._heartbeats()),
                asyncio.create_task(self._serve()),
                asyncio.create_task(stop.wait()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self._call.cancel()
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, aio.AioRpcError):
                    raise error  # a bug of this helper, not the coordinator closing the stream

    async def _write(self, *messages: pb.NodeMessage) -> None:
        async with self._wlock:
            for message in messages:
                await self._call.write(message)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if not self.silent:
                await self._write(pb.NodeMessage(heartbeat=pb.Heartbeat(sent_at_unix=time.time())))

    async def _serve(self) -> None:
        task: pb.Task | None = None
        reassembler: Reassembler | None = None
        while True:
            message = await self._call.read()
            if message is STREAM_END:
                return
            assert isinstance(message, pb.CoordinatorMessage)
            kind = message.WhichOneof("body")
            if kind == "task":
                task = message.task
                if not task.HasField("weights"):
                    if await self._answer(task, None):
                        return
                    continue
                reassembler = Reassembler(task.weights, max_total_bytes=1 << 32)
            elif kind == "chunk" and reassembler is not None and task is not None:
                reassembler.add(message.chunk)
            elif kind == "goodbye":
                return
            if reassembler is not None and task is not None and reassembler.done:
                weights = reassembler.finish()
                reassembler = None
                if await self._answer(task, weights):
                    return

    async def _answer(self, task: pb.Task, weights: Weights | None) -> bool:
        """Answer ``task``; True when the behaviour ends the session."""
        config = decode_values(task.config)
        if task.kind == pb.TASK_KIND_INIT:
            initial = DispatchRunner({}).init(config)  # honest, as ``clawfed node`` answers
            await self._send_update(task.task_id, 0, initial)
            return False
        if task.kind != pb.TASK_KIND_FIT or weights is None:
            failure = pb.TaskFailure(code="node_error", message="hostile node: not a fit task")
            await self._write(
                pb.NodeMessage(result=pb.TaskResult(task_id=task.task_id, failure=failure))
            )
            return False
        self.fit_tasks += 1
        await asyncio.sleep(self.answer_delay_s)
        return await self._misbehave(task.task_id, weights)

    async def _send_update(
        self,
        task_id: str,
        num_samples: int,
        weights: Weights,
        *,
        mangle: Callable[[pb.PayloadHeader, list[pb.Chunk]], list[pb.Chunk]] | None = None,
    ) -> None:
        payload = encode(weights, uuid.uuid4().hex, HOSTILE_CHUNK)
        header = pb.PayloadHeader()
        header.CopyFrom(payload.header)
        chunks = list(payload.chunks())
        if mangle is not None:
            chunks = mangle(header, chunks)
        success = pb.TaskSuccess(num_samples=num_samples, update=header)
        await self._write(
            pb.NodeMessage(result=pb.TaskResult(task_id=task_id, success=success)),
            *(pb.NodeMessage(chunk=c) for c in chunks),
        )

    async def _misbehave(self, task_id: str, weights: Weights) -> bool:
        g = weights["w"]
        zeros = np.zeros_like(g)
        b = self.behaviour
        if b is Misbehaviour.WRONG_NAME:
            await self._send_update(task_id, 10, Weights({"not_w": zeros}))
        elif b is Misbehaviour.WRONG_SHAPE:
            await self._send_update(task_id, 10, Weights({"w": np.zeros(g.size + 1, g.dtype)}))
        elif b is Misbehaviour.WRONG_DTYPE:
            await self._send_update(task_id, 10, Weights({"w": zeros.astype(np.float64)}))
        elif b in (Misbehaviour.NAN, Misbehaviour.INF):
            bad = zeros.copy()
            bad[len(bad) // 2] = np.nan if b is Misbehaviour.NAN else -np.inf
            await self._send_update(task_id, 10, Weights({"w": bad}))
        elif b is Misbehaviour.DIGEST_MISMATCH:

            def wrong_digest(header: pb.PayloadHeader, chunks: list[pb.Chunk]) -> list[pb.Chunk]:
                header.sha256 = hashlib.sha256(b"not these bytes").digest()
                return chunks

            await self._send_update(task_id, 10, Weights({"w": zeros}), mangle=wrong_digest)
        elif b is Misbehaviour.CHUNK_PAST_END:

            def longer(header: pb.PayloadHeader, chunks: list[pb.Chunk]) -> list[pb.Chunk]:
                del header
                last = chunks[-1]
                chunks[-1] = pb.Chunk(
                    payload_id=last.payload_id, offset=last.offset, data=last.data + b"\0" * 64
                )
                return chunks

            await self._send_update(task_id, 10, Weights({"w": zeros}), mangle=longer)
        elif b is Misbehaviour.ANNOUNCED_OVERSIZE:
            n = self.max_update_bytes // 4 + 1
            header = pb.PayloadHeader(
                payload_id=uuid.uuid4().hex,
                tensors=[pb.TensorHeader(name="w", dtype="float32", shape=[n])],
                total_bytes=4 * n,
                sha256=bytes(32),
            )
            success = pb.TaskSuccess(num_samples=10, update=header)
            chunk = pb.Chunk(payload_id=header.payload_id, offset=0, data=bytes(HOSTILE_CHUNK))
            await self._write(
                pb.NodeMessage(result=pb.TaskResult(task_id=task_id, success=success)),
                pb.NodeMessage(chunk=chunk),
            )
        elif b is Misbehaviour.ZERO_SAMPLES:
            await self._send_update(task_id, 0, Weights({"w": zeros}))
        else:
            return await self._stop_midway(task_id, zeros)
        return False

    async def _stop_midway(self, task_id: str, zeros: np.ndarray[Any, Any]) -> bool:
        """Send the header and a first chunk only, then do what the behaviour says."""

        def first_chunk_only(header: pb.PayloadHeader, chunks: list[pb.Chunk]) -> list[pb.Chunk]:
            del header
            assert len(chunks) > 2, "the update must span several chunks to stop midway"
            return chunks[:1]

        await self._send_update(task_id, 10, Weights({"w": zeros}), mangle=first_chunk_only)
        if self.behaviour is Misbehaviour.STOP_THEN_MESSAGE:
            failure = pb.TaskFailure(code="node_error", message="changed my mind")
            await self._write(
                pb.NodeMessage(result=pb.TaskResult(task_id=task_id, failure=failure))
            )
        elif self.behaviour is Misbehaviour.STOP_THEN_DISCONNECT:
            self._call.cancel()
            return True
        elif self.behaviour is Misbehaviour.STOP_THEN_SILENCE:
            self.silent = True
        return False  # STOP_THEN_HEARTBEAT: the heartbeat task keeps going


@contextlib.asynccontextmanager
async def running_hostiles(nodes: Sequence[HostileNode]) -> AsyncIterator[list[HostileNode]]:
    """Run hostile nodes as tasks of this loop until the block ends."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(n.run(stop), name=f"hostile:{n.kit.node_id}") for n in nodes]
    try:
        for node, task in zip(nodes, tasks, strict=True):
            welcomed = asyncio.create_task(node.welcomed.wait())
            await asyncio.wait({welcomed, task}, timeout=WAIT_S, return_when="FIRST_COMPLETED")
            welcomed.cancel()
            if task.done():
                task.result()
            assert node.welcomed.is_set(), f"hostile node {node.kit.node_id} not welcomed"
        yield list(nodes)
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=WAIT_S)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise errors[0]
