"""Hostile updates over the real wire are rejected with their reason; honest nodes carry on."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
from conftest import WorkspaceFactory
from integration_hostile import EXPECTED_REJECTION, HostileNode, Misbehaviour, running_hostiles
from integration_support import (
    WAIT_S,
    enroll,
    job_yaml,
    run,
    running_agents,
    running_coordinator,
    until,
)

from clawfed.coordinator.jobspec import parse_job
from clawfed.core import Weights
from clawfed.governance.jobs import JobStatus
from clawfed.governance.registry import ModelRegistry
from clawfed.governance.rounds import RoundRecord, RoundStatus
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire.payload import encode

PARAMS = 4096  # 16 KiB of float32: 16 chunks of the hostile node's 1 KiB
MAX_UPDATE_BYTES = 1 << 20
HONEST = ["a-honest-0", "a-honest-1"]


def test_every_bad_update_is_rejected_with_its_reason_and_the_round_goes_on(
    workspace_factory: WorkspaceFactory,
) -> None:
    # Enough memory slots that no update waits for another (see the back-pressure tests).
    ws = workspace_factory(max_update_bytes=MAX_UPDATE_BYTES, max_inflight_updates=32)
    honest_kits = [enroll(ws, n) for n in HONEST]
    hostile = {
        b: HostileNode(enroll(ws, f"h-{b.value}"), b, max_update_bytes=MAX_UPDATE_BYTES)
        for b in EXPECTED_REJECTION
    }

    async def scenario() -> tuple[str, str, list[RoundRecord], int]:
        async with (
            running_coordinator(ws) as c,
            running_agents(honest_kits) as honest,
            running_hostiles(list(hostile.values())),
        ):
            await honest.connected()
            everyone = len(HONEST) + len(hostile)
            await until(lambda: len(c.hub.live_nodes()) == everyone, "every node to be live")
            spec = parse_job(job_yaml("hostile", params=PARAMS, rounds=2, min_nodes=2))
            c.jobs.submit(spec, actor="test")
            await asyncio.wait_for(c.jobs.wait("hostile"), WAIT_S)
            info = c.jobs.info("hostile")
            lineage = ModelRegistry(c.db).lineage("hostile@v2")
            return info.status, info.message, c.jobs.store.rounds("hostile"), len(lineage)

    status, message, rounds, versions = run(scenario())

    assert status == JobStatus.COMPLETED, message
    assert versions == 2
    assert [(r.round_no, r.status) for r in rounds] == [
        (1, RoundStatus.COMPLETED),
        (2, RoundStatus.COMPLETED),
    ]
    first = rounds[0]
    assert sorted(p.node_id for p in first.participants) == HONEST
    assert first.dropped == ()
    got = {r.node_id: (r.reason, r.detail) for r in first.rejected}
    want = {f"h-{b.value}": str(reason) for b, reason in EXPECTED_REJECTION.items()}
    assert {n: reason for n, (reason, _) in got.items()} == want
    assert all(detail for _, detail in got.values())
    assert "larger than announced" in got["h-chunk_past_end"][1]
    assert "the limit is 1048576" in got["h-announced_oversize"][1]
    assert "heartbeat message arrived" in got["h-stop_then_heartbeat"][1]
    assert "result message arrived" in got["h-stop_then_message"][1]
    assert "stream ended mid-update" in got["h-stop_then_disconnect"][1]
    for node in hostile.values():
        assert node.fit_tasks >= 1
    second = rounds[1]
    assert sorted(p.node_id for p in second.participants) == HONEST
    assert "h-stop_then_disconnect" not in {r.node_id for r in second.rejected}


# ---- a node that stalls mid-update while holding the coordinator's memory slot ----------


class TrickleNode(HostileNode):
    """Sends an honest all-zero update one chunk every ``gap_s`` seconds: slow, never stalled
    (a chunk arrives well within the coordinator's stall limit), so it keeps its slot."""

    def __init__(self, kit: Path, gap_s: float) -> None:
        super().__init__(kit, Misbehaviour.STOP_THEN_SILENCE, max_update_bytes=MAX_UPDATE_BYTES)
        self.gap_s = gap_s

    async def _misbehave(self, task_id: str, weights: Weights) -> bool:
        payload = encode(Weights({"w": np.zeros_like(weights["w"])}), uuid.uuid4().hex, 1024)
        success = pb.TaskSuccess(num_samples=10, update=payload.header)
        self.silent = True  # no heartbeat mid-update: it would cut the update short
        try:
            await self._write(
                pb.NodeMessage(result=pb.TaskResult(task_id=task_id, success=success))
            )
            for chunk in payload.chunks():
                await self._write(pb.NodeMessage(chunk=chunk))
                await asyncio.sleep(self.gap_s)
        finally:
            self.silent = False
        return False


def _stall_round(
    workspace_factory: WorkspaceFactory,
    others: dict[str, Misbehaviour | None],
    deadline_s: float = 2.0,
    heartbeat_interval_s: float = 1.0,
    trickle_gap_s: float | None = None,
) -> tuple[str, list[RoundRecord], list[tuple[str, str]]]:
    """One round with ``max_inflight_updates=1``: ``h-stall`` takes the only slot and goes
    silent (or, with ``trickle_gap_s``, sends its chunks that far apart); ``others`` (honest
    when None, else hostile) answer 0.3 s later."""
    ws = workspace_factory(
        max_update_bytes=MAX_UPDATE_BYTES,
        max_inflight_updates=1,
        heartbeat_interval_s=heartbeat_interval_s,
    )
    stall = (
        HostileNode(
            enroll(ws, "h-stall"),
            Misbehaviour.STOP_THEN_SILENCE,
            max_update_bytes=MAX_UPDATE_BYTES,
        )
        if trickle_gap_s is None
        else TrickleNode(enroll(ws, "h-stall"), trickle_gap_s)
    )
    hostiles = [stall] + [
        HostileNode(enroll(ws, n), b, max_update_bytes=MAX_UPDATE_BYTES, answer_delay_s=0.3)
        for n, b in others.items()
        if b is not None
    ]
    honest_kits = [enroll(ws, n) for n, b in others.items() if b is None]

    async def scenario() -> tuple[str, list[RoundRecord], list[tuple[str, str]]]:
        async with (
            running_coordinator(ws) as c,
            running_agents(honest_kits) as honest,
            running_hostiles(hostiles),
        ):
            await honest.connected()
            everyone = len(hostiles) + len(honest_kits)
            await until(lambda: len(c.hub.live_nodes()) == everyone, "every node to be live")
            spec = parse_job(
                job_yaml("stall", params=PARAMS, min_nodes=1, deadline_s=deadline_s, sleep_s=0.3)
            )
            c.jobs.submit(spec, actor="test")
            await asyncio.wait_for(c.jobs.wait("stall"), WAIT_S)
            info = c.jobs.info("stall")
            return info.status, c.jobs.store.rounds("stall"), list(honest.events)

    return run(scenario())


def test_node_waiting_for_a_memory_slot_keeps_hearing_heartbeats(
    workspace_factory: WorkspaceFactory,
) -> None:
    """Back-pressure must not look like a dead coordinator to the waiting node.

    The honest node's update waits the whole round behind h-stall, which sends its 16
    chunks 0.25 s apart (4 s, past the deadline; never silent long enough to count as
    stalled); the honest session must stay up (the coordinator keeps sending heartbeats
    although it does not read the node).
    """
    # the deadline outlasts the node's patience (4 heartbeat intervals = 2 s) with no heartbeat
    _, rounds, events = _stall_round(
        workspace_factory,
        {"a-honest-0": None},
        deadline_s=3.0,
        heartbeat_interval_s=0.5,
        trickle_gap_s=0.25,
    )

    assert events == [("a-honest-0", "connected")]
    first = rounds[0]
    assert "a-honest-0" in {d.node_id for d in first.dropped}  # waited, but not cut off
    assert "h-stall" in {d.node_id for d in first.dropped}  # slow, not stalled: a straggler
    assert first.rejected == ()


def test_node_stalling_mid_update_does_not_starve_honest_updates(
    workspace_factory: WorkspaceFactory,
) -> None:
    """h-stall sends a header and one chunk, then nothing: after STALL_INTERVALS heartbeat
    intervals (2 s here) without a chunk its update is rejected and the slot is freed."""
    status, rounds, _ = _stall_round(workspace_factory, {"a-honest-0": None}, deadline_s=3.0)

    assert status == JobStatus.COMPLETED
    first = rounds[0]
    assert [p.node_id for p in first.participants] == ["a-honest-0"]
    assert [(r.node_id, r.reason) for r in first.rejected] == [("h-stall", "truncated")]
    assert "stalled mid-update" in first.rejected[0].detail
    assert "memory slot was released" in first.rejected[0].detail


def test_update_cut_off_while_waiting_for_memory_is_rejected_as_truncated(
    workspace_factory: WorkspaceFactory,
) -> None:
    status, rounds, _ = _stall_round(
        workspace_factory, {"h-disconnect": Misbehaviour.STOP_THEN_DISCONNECT}
    )

    assert status == JobStatus.FAILED  # nothing usable arrived: h-stall holds the only slot
    first = rounds[0]
    got = {r.node_id: (r.reason, r.detail) for r in first.rejected}
    assert got.get("h-disconnect", ("", ""))[0] == "truncated", first.dropped
    assert "before its bytes" in got["h-disconnect"][1]
    assert "h-disconnect" not in {d.node_id for d in first.dropped}
