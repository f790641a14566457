"""Coordinator restarts: a job resumes without losing or repeating a round; nodes reconnect."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from integration_support import (
    WAIT_S,
    EventRecorder,
    Procs,
    audit,
    enroll,
    job_yaml,
    run,
    running_agents,
    running_coordinator,
    store,
    until,
    wait_until,
)

from clawfed.cli.common import admin_stub
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.workspace import Workspace
from clawfed.governance.jobs import JobRecord, JobStatus, JobStore
from clawfed.governance.nodes import NodeRegistry
from clawfed.governance.registry import ModelRegistry
from clawfed.governance.rounds import RoundStatus
from clawfed.wire._proto import federation_pb2 as pb

pytestmark = pytest.mark.slow  # coordinator and node processes

ROUNDS = 6


def test_sigkilled_coordinator_resumes_the_job_without_losing_or_repeating_a_round(
    workspace: Workspace, procs: Procs
) -> None:
    kits = [enroll(workspace, name) for name in ("credit", "audit")]
    procs.coordinator(workspace, "coordinator-1")
    nodes = [procs.node(kit) for kit in kits]
    with store(workspace) as db:
        jobs = JobStore(db)
        wait_until(lambda: len(audit(db, "connect")) >= 2, "both nodes to connect")
        spec = job_yaml("resume", rounds=ROUNDS, min_nodes=2, deadline_s=20, sleep_s=0.4)
        with admin_stub(workspace) as stub:
            stub.SubmitJob(pb.SubmitJobRequest(spec_yaml=spec))

        wait_until(lambda: jobs.get("resume").rounds_done >= 2, "round 2 to complete", 2 * WAIT_S)
        procs.started[0].sigkill()
        done_at_kill = jobs.get("resume").rounds_done
        assert 2 <= done_at_kill < ROUNDS
        assert jobs.get("resume").status == JobStatus.RUNNING

        second = procs.coordinator(workspace, "coordinator-2")

        def finished() -> JobRecord | None:
            record = jobs.get("resume")
            return None if record.status == JobStatus.RUNNING else record

        job = wait_until(finished, "the job to finish", 2 * WAIT_S)

        assert job.status == JobStatus.COMPLETED, job.message
        assert job.message == f"final version resume@v{ROUNDS}"
        assert job.rounds_done == ROUNDS
        completed = [r for r in jobs.rounds("resume") if r.status == RoundStatus.COMPLETED]
        assert [r.round_no for r in completed] == list(range(1, ROUNDS + 1))
        assert [r.version_id for r in completed] == [f"resume@v{n}" for n in range(1, 7)]
        versions = ModelRegistry(db).list("resume")
        assert [(v.version_id, v.round_no) for v in versions] == [
            (f"resume@v{n}", n) for n in range(1, ROUNDS + 1)
        ]
        lineage = ModelRegistry(db).lineage(f"resume@v{ROUNDS}")
        assert [v.version_id for v in lineage] == [f"resume@v{n}" for n in range(ROUNDS, 0, -1)]
        assert [v.parent_version_id for v in lineage] == [
            *(f"resume@v{n}" for n in range(ROUNDS - 1, 0, -1)),
            None,
        ]
    assert f"resuming job resume after round {done_at_kill}" in second.output()
    assert all(node.alive() for node in nodes), "the nodes were never restarted"


def test_nodes_reconnect_by_themselves_after_the_coordinator_comes_back(
    workspace: Workspace, procs: Procs
) -> None:
    kits = [enroll(workspace, name) for name in ("credit", "audit")]
    gone = enroll(workspace, "gone")

    async def scenario() -> tuple[list[tuple[str, str]], dict[str, bool], dict[str, bool]]:
        await asyncio.to_thread(procs.coordinator, workspace, "coordinator-1")
        async with running_agents(kits) as agents:
            async with running_agents([gone]) as leaving:  # stops for good with the coordinator
                await agents.connected()
                await leaving.connected()
                await asyncio.to_thread(procs.started[0].sigkill)
            await until(
                lambda: all(not a.connected.is_set() for a in agents.agents), "the agents to notice"
            )
            await asyncio.to_thread(procs.coordinator, workspace, "coordinator-2")
            await agents.connected()
            with admin_stub(workspace) as stub:
                listed = stub.ListNodes(pb.ListNodesRequest()).nodes
            with store(workspace) as db:
                stored = {r.node_id: r.connected for r in NodeRegistry(db).list()}
            return list(agents.events), {n.node_id: n.connected for n in listed}, stored

    events, connected, stored = run(scenario())

    for node_id in ("credit", "audit"):
        mine = [what for who, what in events if who == node_id]
        assert mine[0] == "connected" and mine[-1] == "connected", mine
        assert mine.count("connected") >= 2, mine
        assert "reconnecting" in mine
    assert connected == {"credit": True, "audit": True, "gone": False}
    # the store agrees, and "gone" is not left connected by the killed coordinator
    assert stored == connected


def test_result_of_a_task_from_an_ended_session_is_not_sent_on_the_next_one(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    """A node mid-fit when the coordinator restarts must not upload that stale result."""
    caplog.set_level(logging.INFO)
    kit = enroll(workspace, "credit")

    async def scenario() -> tuple[pb.JobInfo, list[tuple[str, str]]]:
        async with running_agents([kit]) as agents:
            async with running_coordinator(workspace) as first:
                events = EventRecorder(first)
                await agents.connected()
                spec = parse_job(job_yaml("stale", deadline_s=30, sleep_s=1.0))
                first.jobs.submit(spec, actor="test")
                await until(lambda: events.of("round_started"), "round 1 to start")
            async with running_coordinator(workspace) as second:  # resumes the job
                await asyncio.wait_for(second.jobs.wait("stale"), WAIT_S)
                await asyncio.sleep(1.0)  # the first fit has ended by now
                return second.jobs.info("stale"), list(agents.events)

    info, events = run(scenario())

    assert info.status == JobStatus.COMPLETED, info.message
    assert [e for _, e in events].count("connected") >= 2
    stale = [r.getMessage() for r in caplog.records if "unknown or finished task" in r.getMessage()]
    assert stale == []
    node_side = [
        r.getMessage()
        for r in caplog.records
        if "never retrieved" in r.getMessage() and "clawfed/node/" in r.getMessage()
    ]
    assert node_side == []  # no task of the ended session failed unheard on the node


def test_stopping_the_coordinator_mid_round_leaves_no_orphaned_task(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    kit = enroll(workspace, "credit")

    async def scenario() -> None:
        async with running_agents([kit]) as agents, running_coordinator(workspace) as c:
            events = EventRecorder(c)
            await agents.connected()
            c.jobs.submit(parse_job(job_yaml("orphans", sleep_s=1.0)), actor="test")
            await until(lambda: events.of("round_started"), "round 1 to start")
        gc.collect()

    run(scenario())

    orphans = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert orphans == []


def test_node_joining_a_job_that_waits_for_it_is_welcomed_before_its_first_task(
    workspace: Workspace,
) -> None:
    """The engine pushes a task the moment a node attaches; the welcome must still be first."""
    kits = [enroll(workspace, name) for name in ("credit", "audit")]

    async def scenario() -> pb.JobInfo:
        async with running_coordinator(workspace) as c:
            c.jobs.submit(parse_job(job_yaml("eager", rounds=2, min_nodes=2)), actor="test")
            async with running_agents(kits) as agents:
                await agents.connected()
                await asyncio.wait_for(c.jobs.wait("eager"), WAIT_S)
                assert [e for _, e in agents.events].count("connected") == 2, agents.events
                return c.jobs.info("eager")

    info = run(scenario())

    assert info.status == JobStatus.COMPLETED, info.message
