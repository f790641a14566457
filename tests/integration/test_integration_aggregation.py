"""Aggregation over the real gateway: async FedBuff with a slow node process, and compressed,
screened, contribution-weighted rounds over mutual-TLS sessions, recorded in the store."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np
import pytest
from integration_support import (
    WAIT_S,
    EventRecorder,
    Procs,
    audit,
    enroll,
    run,
    running_agents,
    running_coordinator,
    slow_node,
    until,
)

from clawfed.aggregation import ConfigValue
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.round_extras import AUDIT_ACTION
from clawfed.coordinator.workspace import Workspace
from clawfed.core import Weights
from clawfed.governance.jobs import JobStatus
from clawfed.governance.rounds import ContributionStore
from clawfed.node.runner import EvalAnswer, FitAnswer

pytestmark = pytest.mark.slow  # node processes

D = 2000
TARGET = np.linspace(-1.0, 1.0, D)


def test_async_job_runs_fedbuff_and_a_slow_department_never_holds_back_the_others(
    workspace: Workspace, procs: Procs
) -> None:
    job = (
        "name: buffered\nmodel: {name: noop, settings: {params: 500}}\nrounds: 3\n"
        "min_nodes: 1\nround_deadline_s: 600\nmode: async\n"
        "fedbuff: {buffer_size: 2, staleness_exponent: 0.5}\ncompression: fp16\n"
    )
    kits = {name: enroll(workspace, name) for name in ("a", "b", "z-slow")}

    async def scenario() -> tuple[str, list[list[str]], list[int]]:
        async with running_coordinator(workspace) as c:
            # the slow department is a real node process; the fast ones run in this process
            procs.start("z-slow", slow_node(kits["z-slow"], 600.0))
            async with running_agents([kits["a"], kits["b"]]) as fast:
                await fast.connected()
                await until(lambda: len(c.hub.live_nodes()) == 3, "every node to connect")
                c.jobs.submit(parse_job(job), actor="test")
                await asyncio.wait_for(c.jobs.wait("buffered"), WAIT_S)
            info = c.jobs.info("buffered")
            rounds = c.jobs.store.rounds("buffered")
            return (
                info.status,
                [[p.node_id for p in r.participants] for r in rounds],
                [r.bytes_up for r in rounds],
            )

    status, participants, bytes_up = run(scenario())
    assert status == JobStatus.COMPLETED
    assert len(participants) == 3
    assert all(p and "z-slow" not in p for p in participants)  # it is still training
    assert all(b == 2 * 500 * 2 for b in bytes_up)  # two fp16 updates of 500 values each


class Department:
    """An in-process runner with real training signal: honest, or a copy of the global."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind = kind
        self.rng = np.random.default_rng(seed)

    def init(self, config: Mapping[str, ConfigValue]) -> Weights:
        del config
        return Weights({"w": np.zeros(D, np.float32)})

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        del config
        w = np.asarray(weights["w"], np.float64)
        delta = 0.5 * (TARGET - w) + 0.01 * self.rng.normal(size=D)
        if self.kind == "copy":
            delta = np.zeros(D)
        return FitAnswer(100, {}, Weights({"w": delta.astype(np.float32)}))

    def evaluate(self, config: Mapping[str, ConfigValue], weights: Weights) -> EvalAnswer:
        del config
        d = np.linalg.norm(np.asarray(weights["w"], np.float64) - TARGET) / np.linalg.norm(TARGET)
        return EvalAnswer(40, {"accuracy": float(1.0 / (1.0 + d**2))})

    def stats(self, config: Mapping[str, ConfigValue]) -> Weights:
        del config
        raise AssertionError("no STATS phase in this job")


def test_compressed_screened_contribution_rounds_are_recorded_and_audited(
    workspace: Workspace,
) -> None:
    names = ["credit", "compliance", "audit", "lazy"]
    kits = [enroll(workspace, n, department=f"dept-{n}") for n in names]
    kinds = iter(["honest", "honest", "honest", "copy"])
    seeds = iter(range(4))
    job = parse_job(
        "name: screened\nmodel: {name: noop}\nrounds: 2\nmin_nodes: 4\nround_deadline_s: 60\n"
        "compression: {codec: topk, topk_ratio: 0.25}\nfree_riders: exclude\n"
        "weighting: {samples: 1.0, quality: 1.0, contribution: 0.5}\n"
        "contribution: {metric: accuracy}\n"
    )

    async def scenario() -> list[str]:
        async with running_coordinator(workspace) as c:
            events = EventRecorder(c)
            async with running_agents(
                kits, runner=lambda: Department(next(kinds), next(seeds))
            ) as agents:
                await agents.connected()
                c.jobs.submit(job, actor="test")
                await asyncio.wait_for(c.jobs.wait("screened"), WAIT_S)
            return [str(d["node_id"]) for d in events.of("free_rider")]

    flagged = run(scenario())
    assert flagged == ["lazy", "lazy"]
    with workspace.database() as db:
        from clawfed.governance.jobs import JobStore

        jobs = JobStore(db)
        assert jobs.get("screened").status == JobStatus.COMPLETED
        rounds = [r for r in jobs.rounds("screened") if r.status == "completed"]
        k = int(np.ceil(0.25 * D))
        # three top-k updates of k (int32 index, float32 value) pairs; lazy's is excluded
        assert [r.bytes_up for r in rounds] == [4 * k * 8, 4 * k * 8]
        assert [sorted(p.node_id for p in r.participants) for r in rounds] == [
            ["audit", "compliance", "credit"]
        ] * 2
        store = ContributionStore(db)
        details = store.details("screened", 2)
        assert details["compression"]["codec"] == "topk"
        assert details["compression"]["bytes_decoded"] == 4 * D * 4
        assert {w["node_id"]: w["action"] for w in details["weights"]}["lazy"] == "rejected"
        summary = {s.department: s for s in store.summary("screened")}
        assert summary["dept-lazy"].excluded_rounds == 2
        assert summary["dept-lazy"].total_shapley == pytest.approx(0.0)
        assert summary["dept-credit"].total_shapley > 0
        records = audit(db, AUDIT_ACTION)
        assert [r.detail["round"] for r in records] == [1, 2]
        assert "dept-lazy" in records[0].departments
