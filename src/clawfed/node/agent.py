"""The department agent: dials the coordinator, keeps one stream open, runs pushed tasks."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc
from grpc import aio

from clawfed import PROTOCOL_VERSION, __version__
from clawfed.core import (
    ClawfedError,
    PayloadError,
    ProtocolVersionMismatch,
    SecurityError,
    Weights,
)
from clawfed.core.buffers import shared_pool
from clawfed.node.query import run_query
from clawfed.node.runner import TaskRunner
from clawfed.node.secure_tasks import STEP_OF_KIND, run_secure
from clawfed.wire import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, Reassembler, decode_values, encode
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.chunkwire import (
    ChunkView,
    chunk_message,
    parse_coordinator_message,
    serialize_message,
)
from clawfed.wire.codecs import UpdateCompressor
from clawfed.wire.eof import STREAM_END

log = logging.getLogger("clawfed.node")

_MAX_MODEL_BYTES = 16 << 30
_SESSION_METHOD = "/clawfed.v1.Federation/Session"
#: How the coordinator's protocol-mismatch goodbye names its own version.
_COORDINATOR_VERSION = re.compile(r"coordinator speaks v(\d+)")


class SessionRefused(SecurityError):
    """The coordinator ended the session on purpose (revoked, unknown node…)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"the coordinator refused this node ({code}): {message}")
        self.code = code


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog, 2015)."""

    initial_s: float = 0.5
    cap_s: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (0-based)."""
        ceiling = min(self.cap_s, self.initial_s * self.factor**attempt)
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Credentials:
    """What the node needs to dial the coordinator (from its enrollment kit)."""

    node_id: str
    coordinator: str
    ca_cert_pem: bytes
    cert_pem: bytes
    key_pem: bytes


class NodeAgent:
    """One node's connection to the coordinator; ``run`` reconnects until stopped.

    ``on_send``, when given, receives the serialized bytes of every message the node writes
    to the stream, just before gRPC sends them (under TLS); tests and audits use it to see
    exactly what leaves the node.
    """

    def __init__(
        self,
        credentials: Credentials,
        runner: TaskRunner,
        *,
        datasets: Sequence[tuple[str, str]] = (),
        chunk_size: int = 1 << 20,
        backoff: Backoff | None = None,
        protocol_version: int = PROTOCOL_VERSION,
        on_event: Callable[[str], None] | None = None,
        on_send: Callable[[bytes], None] | None = None,
    ) -> None:
        self._creds = credentials
        self._runner = runner
        self._datasets = tuple(datasets)
        self._chunk_size = chunk_size
        self._session_chunk_size = 0  # what the coordinator's welcome asked for (0: not said)
        self._backoff = backoff or Backoff()
        self._protocol_version = protocol_version
        self._on_event = on_event
        self._on_send = on_send
        self._rng = random.Random()
        self._wlock = asyncio.Lock()
        self._cancelled: set[str] = set()
        self._running: dict[str, asyncio.Task[None]] = {}  # tasks of the current session
        self._compressor = UpdateCompressor()
        self.heartbeat_interval_s = 5.0
        self.connected = asyncio.Event()

    def _event(self, what: str) -> None:
        if self._on_event is not None:
            self._on_event(what)

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set; raise on errors retrying cannot fix."""
        attempt = 0
        while not stop.is_set():
            try:
                welcomed = await self._session(stop)
            except (ProtocolVersionMismatch, SessionRefused):
                raise
            except (aio.AioRpcError, ClawfedError, OSError) as exc:
                welcomed = False
                detail = exc.details() if isinstance(exc, aio.AioRpcError) else str(exc)
                log.warning("connection to %s failed: %s", self._creds.coordinator, detail)
            finally:
                self.connected.clear()
            if stop.is_set():
                break
            attempt = 0 if welcomed else attempt + 1
            wait = self._backoff.delay(attempt, self._rng)
            log.info("reconnecting to %s in %.1f s", self._creds.coordinator, wait)
            self._event("reconnecting")
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass

    def _channel(self) -> aio.Channel:
        creds = grpc.ssl_channel_credentials(
            root_certificates=self._creds.ca_cert_pem,
            private_key=self._creds.key_pem,
            certificate_chain=self._creds.cert_pem,
        )
        options = [
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.enable_retries", 0),
            # DATA frames up to 1 MiB (HTTP/2's default is 16 KiB): a chunk in one or two frames
            ("grpc.http2.max_frame_size", 1 << 20),
        ]
        return aio.secure_channel(self._creds.coordinator, creds, options=options)

    async def _write(self, message: pb.NodeMessage) -> None:
        async with self._wlock:
            await self._call.write(message)

    async def _session(self, stop: asyncio.Event) -> bool:
        """One session; returns True once the coordinator welcomed us."""
        welcomed = False
        async with self._channel() as channel:
            self._call = _open_session(channel, self._on_send)
            hello = pb.Hello(protocol_version=self._protocol_version, software_version=__version__)
            for name, meta in self._datasets:
                hello.datasets.add(name=name, metadata_json=meta)
            await self._write(pb.NodeMessage(hello=hello))
            first = await asyncio.wait_for(self._call.read(), 30)
            if first is STREAM_END:
                raise ClawfedError("the coordinator closed the stream before welcoming us")
            assert isinstance(first, pb.CoordinatorMessage)
            self._check_refusal(first)
            if first.WhichOneof("body") != "welcome":
                raise ClawfedError("the coordinator's first message was not a welcome")
            welcome = first.welcome
            self.heartbeat_interval_s = welcome.heartbeat_interval_s or 5.0
            self._session_chunk_size = _announced_chunk_size(welcome.chunk_size)
            welcomed = True
            self.connected.set()
            self._event("connected")
            log.info(
                "connected to %s as %s (%s)",
                self._creds.coordinator,
                welcome.node_id,
                welcome.department,
            )
            beats = asyncio.create_task(self._heartbeats())
            reader = asyncio.create_task(self._read_loop())
            stopper = asyncio.create_task(stop.wait())
            try:
                done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    reader.result()
                else:
                    await self._say_goodbye()
            finally:
                # Tasks of this session die with it: the coordinator forgets them, and a
                # result sent on the next session would be a wasted upload it throws away.
                # (A fit already running in its thread finishes there, unheard.)
                running = list(self._running.values())
                self._running.clear()
                for t in (beats, reader, stopper, *running):
                    t.cancel()
                await asyncio.gather(beats, reader, stopper, *running, return_exceptions=True)
                self._call.cancel()
        return welcomed

    def _check_refusal(self, message: pb.CoordinatorMessage) -> None:
        if message.WhichOneof("body") != "goodbye":
            return
        code, text = message.goodbye.code, message.goodbye.message
        if code == "protocol_mismatch":
            found = _COORDINATOR_VERSION.search(text)
            theirs = int(found.group(1)) if found else 0
            raise ProtocolVersionMismatch(self._protocol_version, theirs) from SessionRefused(
                code, text
            )
        raise SessionRefused(code, text)

    async def _say_goodbye(self) -> None:
        try:
            await asyncio.wait_for(
                self._write(
                    pb.NodeMessage(
                        goodbye=pb.Goodbye(code="stopping", message="node shutting down")
                    )
                ),
                2,
            )
            await self._call.done_writing()
        except (aio.AioRpcError, TimeoutError, asyncio.InvalidStateError):
            pass

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            if not self._wlock.locked():
                await self._write(pb.NodeMessage(heartbeat=pb.Heartbeat(sent_at_unix=time.time())))

    async def _read_loop(self) -> None:
        silence_limit = self.heartbeat_interval_s * 4
        task: pb.Task | None = None
        reassembler: Reassembler | None = None
        running = self._running
        while True:
            try:
                message = await asyncio.wait_for(self._call.read(), silence_limit)
            except TimeoutError as exc:
                raise ClawfedError(f"no word from the coordinator for {silence_limit:g} s") from exc
            if message is STREAM_END:
                raise ClawfedError("the coordinator closed the stream")
            if isinstance(message, ChunkView):  # the common case, parsed without a copy
                if reassembler is None or task is None:
                    continue
                reassembler.add(message)
                if reassembler.done:
                    weights = reassembler.finish()
                    running[task.task_id] = asyncio.create_task(self._execute(task, weights))
                    task, reassembler = None, None
                continue
            assert isinstance(message, pb.CoordinatorMessage)
            kind = message.WhichOneof("body")
            if kind == "chunk":
                if reassembler is None or task is None:
                    continue
                reassembler.add(message.chunk)
                if reassembler.done:
                    weights = reassembler.finish()
                    running[task.task_id] = asyncio.create_task(self._execute(task, weights))
                    task, reassembler = None, None
            elif kind == "task":
                task = message.task
                if task.HasField("weights"):
                    reassembler = Reassembler(
                        task.weights, max_total_bytes=_MAX_MODEL_BYTES, pool=shared_pool()
                    )
                    if reassembler.done:
                        running[task.task_id] = asyncio.create_task(
                            self._execute(task, reassembler.finish())
                        )
                        task, reassembler = None, None
                else:
                    running[task.task_id] = asyncio.create_task(self._execute(task, None))
                    task = None
            elif kind == "cancel":
                self._cancelled.add(message.cancel.task_id)
                log.info(
                    "task %s cancelled: %s", message.cancel.task_id[:12], message.cancel.reason
                )
            elif kind == "goodbye":
                self._check_refusal(message)
            for tid in [t for t, r in running.items() if r.done()]:
                running.pop(tid)

    async def _execute(self, task: pb.Task, weights: Weights | None) -> None:
        config = decode_values(task.config)
        try:
            if task.kind == pb.TASK_KIND_INIT:
                init = await asyncio.to_thread(self._runner.init, config)
                await self._send_success(task.task_id, 0, {}, init)
                return
            if task.kind == pb.TASK_KIND_STATS:
                stats = await asyncio.to_thread(self._runner.stats, config)
                await self._send_success(task.task_id, 0, {}, stats)
                return
            step = STEP_OF_KIND.get(task.kind)  # a secure-aggregation phase
            if step is not None:
                sa = await asyncio.to_thread(run_secure, self._runner, step, config, weights)
                await self._send_success(task.task_id, sa.num_samples, sa.metrics, sa.payload)
                return
            if weights is None:
                raise ClawfedError("the task carried no model weights")
            if task.kind == pb.TASK_KIND_FIT:
                fit = await asyncio.to_thread(self._runner.fit, config, weights)
                # the job's codec (``compression`` in the job file); error feedback stays here
                wire = await asyncio.to_thread(
                    self._compressor.encode, task.job_id, config, fit.delta
                )
                await self._send_success(task.task_id, fit.num_samples, fit.metrics, wire)
            elif task.kind == pb.TASK_KIND_EVALUATE:
                ev = await asyncio.to_thread(self._runner.evaluate, config, weights)
                await self._send_success(task.task_id, ev.num_samples, ev.metrics, None)
            elif task.kind == pb.TASK_KIND_QUERY:
                answer = await asyncio.to_thread(run_query, self._runner, config, weights)
                await self._send_success(task.task_id, answer.num_samples, {}, answer.aggregates)
            else:
                raise ClawfedError(f"unknown task kind {task.kind}")
        except (ClawfedError, ValueError) as exc:
            log.error(
                "task %s (job %s round %d) failed: %s",
                task.task_id[:12],
                task.job_id,
                task.round,
                exc,
            )
            if task.task_id not in self._cancelled:
                await self._write(
                    pb.NodeMessage(
                        result=pb.TaskResult(
                            task_id=task.task_id,
                            failure=pb.TaskFailure(code=_failure_code(exc), message=str(exc)),
                        )
                    )
                )

    async def _send_success(
        self, task_id: str, num_samples: int, metrics: Mapping[str, float], weights: Weights | None
    ) -> None:
        if task_id in self._cancelled:
            self._cancelled.discard(task_id)
            return
        success = pb.TaskSuccess(num_samples=num_samples, metrics=dict(metrics))
        payload = None
        if weights is not None:
            payload = encode(
                weights, uuid.uuid4().hex, self._session_chunk_size or self._chunk_size
            )
            success.update.CopyFrom(payload.header)
        async with self._wlock:
            await self._call.write(
                pb.NodeMessage(result=pb.TaskResult(task_id=task_id, success=success))
            )
            if payload is not None:
                # each message laid out around views of the tensors: one copy per chunk
                for offset, pieces in payload.spans():
                    await self._call.write(chunk_message(payload.payload_id, offset, pieces))


def _failure_code(exc: Exception) -> str:
    """``refused`` when this node's local policy refused the task, else ``node_error``."""
    from clawfed.node.local_policy import PolicyRefusal

    return "refused" if isinstance(exc, PolicyRefusal) else "node_error"


def _tapped(on_send: Callable[[bytes], None]) -> Callable[[pb.NodeMessage | bytes], bytes]:
    """``serialize_message`` that also hands each message's bytes to ``on_send``."""

    def serialize(message: pb.NodeMessage | bytes) -> bytes:
        raw = serialize_message(message)
        on_send(raw)
        return raw

    return serialize


def _announced_chunk_size(size: int) -> int:
    """The coordinator's chunk size if it is one ``encode`` accepts, else 0 (use our own)."""
    return size if MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE else 0


def _open_session(
    channel: aio.Channel, on_send: Callable[[bytes], None] | None = None
) -> aio.StreamStreamCall[pb.NodeMessage | bytes, pb.CoordinatorMessage | ChunkView]:
    """Open the Session stream: chunks in and out skip the protobuf objects (``chunkwire``)."""
    method = channel.stream_stream(
        _SESSION_METHOD,
        request_serializer=serialize_message if on_send is None else _tapped(on_send),
        response_deserializer=parse_coordinator_message,
    )
    call: aio.StreamStreamCall[pb.NodeMessage | bytes, pb.CoordinatorMessage | ChunkView]
    call = method(None)
    return call


def payload_error_text(exc: PayloadError) -> str:
    """One line for logs about a payload the node could not reassemble."""
    return f"{exc.reason}: {exc.detail}"
