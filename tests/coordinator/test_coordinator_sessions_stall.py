"""The stall watch: an update whose sender falls silent mid-way is rejected and its slot freed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
from coordinator_support import node_credentials, session_call
from grpc import aio

from clawfed import PROTOCOL_VERSION
from clawfed.coordinator.gateway import TaskKind, TaskRequest
from clawfed.coordinator.server import Coordinator
from clawfed.coordinator.workspace import enroll_node, init_workspace
from clawfed.core import RejectReason, UpdateRejected, Weights
from clawfed.wire import encode
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.broadcast import EncodedModel
from clawfed.wire.chunkwire import chunk_message
from common_support import free_port

WAIT_S = 20.0
LIMIT_S = 10.0  # the limit handed to check_stall (the hub's own watch uses 2 x 5 s)


async def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def _drain(call: aio.StreamStreamCall[object, object]) -> None:
    while True:
        await call.read()


def test_silence_counts_only_on_time_ticks_then_rejects_and_frees_the_slot(
    tmp_path: Path,
) -> None:
    ws = init_workspace(tmp_path / "ws", port=free_port())
    kit = enroll_node(ws, "credit", "信贷部", tmp_path / "credit.kit")
    global_w = Weights({"w": np.zeros(3000, dtype=np.float32)})

    async def scenario() -> tuple[list[bool], int, int, BaseException | None]:
        coordinator = Coordinator(ws)
        await coordinator.start()
        try:
            async with aio.secure_channel(kit.coordinator, node_credentials(kit)) as channel:
                call = session_call(channel)
                await call.write(pb.NodeMessage(hello=pb.Hello(protocol_version=PROTOCOL_VERSION)))
                reader = asyncio.create_task(_drain(call))
                await _until(lambda: coordinator.hub.get("credit") is not None, "a session")
                session = coordinator.hub.get("credit")
                assert session is not None
                request = TaskRequest("t1", "j", 1, TaskKind.FIT, 0.0, {}, global_w.spec())
                outcome = asyncio.create_task(
                    session.run_task(request, EncodedModel(global_w, 1024))
                )
                payload = encode(global_w, "up-1", chunk_size=1024)
                success = pb.TaskSuccess(num_samples=7)
                success.update.CopyFrom(payload.header)
                await call.write(
                    pb.NodeMessage(result=pb.TaskResult(task_id="t1", success=success))
                )
                offset, pieces = next(iter(payload.spans()))
                await call.write(chunk_message("up-1", offset, pieces))  # then silence
                await _until(lambda: session.receiving_progress == (1024, 12000), "the first chunk")
                slots_taken = coordinator.hub.memory_slots_in_use
                verdicts = [
                    # the loop was blocked: such ticks count 0 s, however many there are
                    *(session.check_stall(0.0, LIMIT_S) for _ in range(50)),
                    session.check_stall(LIMIT_S / 2, LIMIT_S),
                    session.check_stall(LIMIT_S / 2, LIMIT_S),  # exactly the limit: not yet
                    session.check_stall(0.5, LIMIT_S),  # past it
                ]
                error: BaseException | None = None
                try:
                    await asyncio.wait_for(outcome, WAIT_S)
                except UpdateRejected as exc:
                    error = exc
                slots_after = coordinator.hub.memory_slots_in_use
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                call.cancel()
                return verdicts, slots_taken, slots_after, error
        finally:
            await coordinator.stop()

    verdicts, taken, after, error = asyncio.run(scenario())
    assert verdicts == [False] * 52 + [True]
    assert (taken, after) == (1, 0)  # the stalled update's memory slot came back
    assert isinstance(error, UpdateRejected)
    assert error.reason is RejectReason.TRUNCATED
    assert "stalled mid-update" in error.detail
    assert "1024 of 12000 bytes" in error.detail


def test_a_session_not_receiving_is_never_a_stall(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws", port=free_port())
    kit = enroll_node(ws, "credit", "信贷部", tmp_path / "credit.kit")

    async def scenario() -> bool:
        coordinator = Coordinator(ws)
        await coordinator.start()
        try:
            async with aio.secure_channel(kit.coordinator, node_credentials(kit)) as channel:
                call = session_call(channel)
                await call.write(pb.NodeMessage(hello=pb.Hello(protocol_version=PROTOCOL_VERSION)))
                await _until(lambda: coordinator.hub.get("credit") is not None, "a session")
                session = coordinator.hub.get("credit")
                assert session is not None
                stalled = session.check_stall(1000.0, LIMIT_S)
                call.cancel()
                return stalled
        finally:
            await coordinator.stop()

    assert asyncio.run(scenario()) is False
