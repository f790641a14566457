"""Node sessions over the real wire: hand-parsed chunks in, bytes protobuf cannot decode out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from coordinator_support import node_credentials, session_call
from grpc import aio

from clawfed import PROTOCOL_VERSION
from clawfed.coordinator.config import save_settings, settings_from_mapping
from clawfed.coordinator.gateway import TaskKind, TaskRequest
from clawfed.coordinator.server import Coordinator
from clawfed.coordinator.sessions import NodeSession
from clawfed.coordinator.workspace import Workspace, enroll_node, init_workspace, open_workspace
from clawfed.core import Weights
from clawfed.node.agent import Credentials, NodeAgent
from clawfed.node.runner import NoopRunner
from clawfed.security.kit import Kit
from clawfed.wire import Reassembler, encode
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.broadcast import EncodedModel
from clawfed.wire.chunkwire import (
    ChunkView,
    chunk_message,
    parse_node_message,
)
from clawfed.wire.eof import STREAM_END
from common_support import free_port

WAIT_S = 20.0


@pytest.fixture
def federation(tmp_path: Path) -> tuple[Workspace, Kit]:
    ws = init_workspace(tmp_path / "ws", port=free_port())
    return ws, enroll_node(ws, "credit", "信贷部", tmp_path / "credit.kit")


class RawNode:
    """A node speaking the Session stream byte by byte (no ``NodeAgent``)."""

    def __init__(self, channel: aio.Channel) -> None:
        self.call = session_call(channel)

    async def hello(self) -> None:
        await self.call.write(pb.NodeMessage(hello=pb.Hello(protocol_version=PROTOCOL_VERSION)))
        welcome = await self.read()
        assert isinstance(welcome, pb.CoordinatorMessage)
        assert welcome.WhichOneof("body") == "welcome"

    async def read(self) -> object:
        while True:
            message = await asyncio.wait_for(self.call.read(), WAIT_S)
            if isinstance(message, pb.CoordinatorMessage) and message.HasField("heartbeat"):
                continue
            return message


async def _session_of(coordinator: Coordinator, node_id: str) -> NodeSession:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while (session := coordinator.hub.get(node_id)) is None:
        assert asyncio.get_running_loop().time() < deadline, "the node never got a session"
        await asyncio.sleep(0.02)
    return session


@contextlib.asynccontextmanager
async def connected(fed: tuple[Workspace, Kit]) -> AsyncIterator[tuple[Coordinator, RawNode]]:
    """A running coordinator and one raw node that said hello to it."""
    ws, kit = fed
    coordinator = Coordinator(ws)
    await coordinator.start()
    try:
        async with aio.secure_channel(kit.coordinator, node_credentials(kit)) as channel:
            node = RawNode(channel)
            await node.hello()
            try:
                yield coordinator, node
            finally:
                node.call.cancel()
    finally:
        await coordinator.stop()


def test_an_update_sent_as_hand_built_chunks_is_delivered(
    federation: tuple[Workspace, Kit],
) -> None:
    global_w = Weights({"w": np.arange(3000, dtype=np.float32)})
    delta = Weights({"w": np.linspace(-1, 1, 3000, dtype=np.float32)})

    async def scenario() -> tuple[Weights, Weights, int]:
        async with connected(federation) as (coordinator, node):
            session = await _session_of(coordinator, "credit")
            model = EncodedModel(global_w, 1024)
            request = TaskRequest(
                task_id="t1",
                job_id="j",
                round_no=1,
                kind=TaskKind.FIT,
                deadline_unix=0.0,
                config={},
                expected=global_w.spec(),
            )
            outcome_task = asyncio.create_task(session.run_task(request, model))
            task = await node.read()
            assert isinstance(task, pb.CoordinatorMessage) and task.HasField("task")
            received = Reassembler(task.task.weights, max_total_bytes=1 << 20)
            while not received.done:
                chunk = await node.read()
                assert isinstance(chunk, ChunkView)
                received.add(chunk)
            assert not model.leased  # every send is done: the messages are gone
            payload = encode(delta, "up-1", chunk_size=1024)
            success = pb.TaskSuccess(num_samples=7)
            success.update.CopyFrom(payload.header)
            await node.call.write(
                pb.NodeMessage(result=pb.TaskResult(task_id="t1", success=success))
            )
            for offset, pieces in payload.spans():
                await node.call.write(chunk_message("up-1", offset, pieces))
            outcome = await asyncio.wait_for(outcome_task, WAIT_S)
            assert outcome.weights is not None
            return received.finish(), outcome.weights, outcome.num_samples

    down, up, samples = asyncio.run(scenario())
    np.testing.assert_array_equal(down["w"], global_w["w"])
    np.testing.assert_array_equal(up["w"], delta["w"])
    assert samples == 7


def test_bytes_protobuf_cannot_decode_end_the_session_with_the_reason(
    federation: tuple[Workspace, Kit],
) -> None:
    async def scenario() -> tuple[object, str, bool]:
        async with connected(federation) as (coordinator, node):
            session = await _session_of(coordinator, "credit")
            await node.call.write(b"\x22\x05\x1a\x10abc")  # a chunk whose data runs past the end
            end = await node.read()
            await asyncio.wait_for(session.closed.wait(), WAIT_S)
            return end, session.close_reason, coordinator.hub.get("credit") is None

    end, reason, gone = asyncio.run(scenario())
    assert end is STREAM_END
    assert reason.startswith("the peer sent a NodeMessage that protobuf cannot decode (7 bytes)")
    assert gone


def test_a_node_cuts_its_update_in_the_chunk_size_the_coordinator_announced(
    tmp_path: Path,
) -> None:
    ws = init_workspace(tmp_path / "ws", port=free_port())
    settings = ws.settings.model_dump(mode="json") | {"chunk_size": 4096}
    save_settings(ws.root, settings_from_mapping(settings, source="test"))
    ws = open_workspace(ws.root)
    kit = enroll_node(ws, "credit", "信贷部", tmp_path / "credit.kit")
    sent: list[bytes] = []
    global_w = Weights({"w": np.zeros(5000, dtype=np.float32)})  # 20000 bytes: 5 chunks

    async def scenario() -> int:
        coordinator = Coordinator(ws)
        await coordinator.start()
        stop = asyncio.Event()
        creds = Credentials(
            kit.node_id, kit.coordinator, kit.ca_cert.encode(), kit.cert.encode(), kit.key.encode()
        )
        agent = NodeAgent(creds, NoopRunner(), on_send=sent.append)  # its own size: 1 MiB
        running = asyncio.create_task(agent.run(stop))
        try:
            session = await _session_of(coordinator, "credit")
            request = TaskRequest(
                task_id="t1",
                job_id="j",
                round_no=1,
                kind=TaskKind.FIT,
                deadline_unix=0.0,
                config={"model.name": "noop"},
                expected=global_w.spec(),
            )
            model = EncodedModel(global_w, coordinator.hub.chunk_size)
            outcome = await asyncio.wait_for(session.run_task(request, model), WAIT_S)
            return outcome.bytes_up
        finally:
            stop.set()
            await asyncio.wait_for(running, WAIT_S)
            await coordinator.stop()

    assert asyncio.run(scenario()) == 20000
    chunks = [m for m in map(parse_node_message, sent) if isinstance(m, ChunkView)]
    assert [len(c.data) for c in chunks] == [4096, 4096, 4096, 4096, 3616]
    assert [c.offset for c in chunks] == [0, 4096, 8192, 12288, 16384]
