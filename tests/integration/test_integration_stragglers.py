"""Stragglers and killed nodes (real node processes): the coordinator never hangs on them."""

from __future__ import annotations

import asyncio

import pytest
from integration_support import (
    WAIT_S,
    EventRecorder,
    Procs,
    enroll,
    job_yaml,
    run,
    running_agents,
    running_coordinator,
    slow_node,
    until,
)

from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.workspace import Workspace
from clawfed.governance.jobs import JobStatus
from clawfed.governance.rounds import RoundRecord, RoundStatus
from clawfed.wire._proto import federation_pb2 as pb

pytestmark = pytest.mark.slow  # node processes


async def _run_job(
    workspace: Workspace, procs: Procs, nodes: dict[str, float | None], job: str, kill: str = ""
) -> tuple[pb.JobInfo, list[RoundRecord]]:
    """Start one node process per entry (None: ``clawfed node``, else a node whose fit is
    that many seconds slower), run ``job``; SIGKILL ``kill`` once round 1 has started."""
    kits = {name: enroll(workspace, name) for name in nodes}
    async with running_coordinator(workspace) as c:
        events = EventRecorder(c)
        started = {
            name: procs.node(kits[name])
            if extra is None
            else procs.start(name, slow_node(kits[name], extra))
            for name, extra in nodes.items()
        }
        await until(lambda: len(c.hub.live_nodes()) == len(nodes), "every node to connect")
        spec = parse_job(job)
        c.jobs.submit(spec, actor="test")
        if kill:
            await until(lambda: events.of("round_started"), "round 1 to start")
            await asyncio.sleep(0.5)  # the node is inside its fit now (it sleeps for seconds)
            await asyncio.to_thread(started[kill].sigkill)
        await asyncio.wait_for(c.jobs.wait(spec.name), 2 * WAIT_S)
        return c.jobs.info(spec.name), c.jobs.store.rounds(spec.name)


def test_straggler_past_the_deadline_is_dropped_and_the_round_completes(
    workspace: Workspace, procs: Procs
) -> None:
    job = job_yaml("strag", min_nodes=1, deadline_s=3)
    info, rounds = run(_run_job(workspace, procs, {"a": None, "z-slow": 60.0}, job))

    assert info.status == JobStatus.COMPLETED, info.message
    assert info.message == "final version strag@v1"
    [r1] = rounds
    assert r1.status == RoundStatus.COMPLETED
    assert [p.node_id for p in r1.participants] == ["a"]
    assert [(d.node_id, d.reason) for d in r1.dropped] == [
        ("z-slow", "straggler: no answer within the round deadline of 3 s")
    ]


def test_node_killed_mid_round_is_dropped_and_the_others_complete_it(
    workspace: Workspace, procs: Procs
) -> None:
    job = job_yaml("killed", rounds=2, min_nodes=1, deadline_s=20, sleep_s=1.5)
    info, rounds = run(_run_job(workspace, procs, {"a": None, "b": None}, job, kill="b"))

    assert info.status == JobStatus.COMPLETED, info.message
    assert info.message == "final version killed@v2"
    assert [(r.round_no, r.status) for r in rounds] == [
        (1, RoundStatus.COMPLETED),
        (2, RoundStatus.COMPLETED),
    ]
    assert [p.node_id for p in rounds[0].participants] == ["a"]
    [dropped] = rounds[0].dropped
    assert dropped.node_id == "b"
    assert dropped.reason.startswith("disconnected: ")
    assert [p.node_id for p in rounds[1].participants] == ["a"]
    assert rounds[1].dropped == ()  # b is gone: round 2 no longer asks it


def test_node_killed_below_min_nodes_fails_the_job_with_a_clear_reason(
    workspace: Workspace, procs: Procs
) -> None:
    job = job_yaml("starved", min_nodes=2, deadline_s=3, max_retries=1, sleep_s=1.5)
    info, rounds = run(_run_job(workspace, procs, {"a": None, "b": None}, job, kill="b"))

    assert info.status == JobStatus.FAILED
    assert info.message == (
        "job starved: round 1 failed after 2 attempt(s): only 1 of min_nodes=2 node(s) connected"
    )
    assert [(r.round_no, r.attempt) for r in rounds] == [(1, 1), (1, 2)]
    first = rounds[0]
    assert first.status == RoundStatus.RETRIED
    assert first.message == "only 1 usable update(s), min_nodes=2 (1 dropped, 0 rejected)"
    assert [d.node_id for d in first.dropped] == ["b"]
    assert first.dropped[0].reason.startswith("disconnected: ")


def test_last_attempt_of_a_failed_round_is_recorded_as_failed(workspace: Workspace) -> None:
    kit = enroll(workspace, "alone")

    async def scenario() -> tuple[pb.JobInfo, list[RoundRecord]]:
        async with running_coordinator(workspace) as c, running_agents([kit]) as agents:
            await agents.connected()
            spec = parse_job(job_yaml("lonely", min_nodes=2, deadline_s=1))
            c.jobs.submit(spec, actor="test")
            await asyncio.wait_for(c.jobs.wait("lonely"), WAIT_S)
            return c.jobs.info("lonely"), c.jobs.store.rounds("lonely")

    info, rounds = run(scenario())

    assert info.status == JobStatus.FAILED
    assert "only 1 of min_nodes=2 node(s) connected" in info.message
    assert [(r.round_no, r.attempt, r.status) for r in rounds] == [(1, 1, RoundStatus.FAILED)]
