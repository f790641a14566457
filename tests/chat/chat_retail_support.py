"""Helpers for the chat tests of the retail scenario: a seeded job, an in-memory federation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from clawfed.coordinator.gateway import TaskOutcome, TaskRequest
from clawfed.coordinator.memory_gateway import MemoryGateway
from clawfed.coordinator.query import CurrentModel, FederatedQuery, QueryResult
from clawfed.core import NodeInfo, Weights
from clawfed.data.retail import RETAIL_DEPARTMENTS
from clawfed.governance import (
    ArtifactStore,
    Database,
    JobStatus,
    JobStore,
    NodeRegistry,
    Participant,
    RoundOutcome,
    StrategyInfo,
)
from clawfed.node.dispatch import DispatchRunner
from retail_support import JOB, retail_spec

START = datetime(2026, 10, 5, 2, 0, tzinfo=UTC)


def seed_retail(
    db: Database, root: Path, rounds: Sequence[Mapping[str, Mapping[str, float]]]
) -> None:
    """Retail nodes and a running retail job with one version per round (MAE per department)."""
    nodes = NodeRegistry(db)
    for serial, (node, dept) in enumerate(RETAIL_DEPARTMENTS.items(), 1):
        nodes.enroll(node, dept, serial, f"{serial:02x}" * 32)
        nodes.set_connected(node, True)
    jobs = JobStore(db)
    jobs.create(JOB, JOB, retail_spec().to_yaml(), 5)
    jobs.set_status(JOB, JobStatus.RUNNING)
    artifacts = ArtifactStore(root / JOB)
    for i, per_dept in enumerate(rounds, 1):
        when = START + timedelta(days=i)
        artifact = artifacts.save(Weights({"w": np.full(2, float(i))}), f"round-{i}", {})
        people = [Participant(n, d, 100) for n, d in RETAIL_DEPARTMENTS.items() if d in per_dept]
        overall = {"mae": float(np.mean([m["mae"] for m in per_dept.values()]))}
        outcome = RoundOutcome(i, when, when, people, overall, per_dept)
        jobs.complete_round(
            JOB, outcome, artifact=artifact, strategy=StrategyInfo("fedavg"), new_state={}
        )


def memory_gateway(runners: Mapping[str, DispatchRunner]) -> MemoryGateway:
    """The runners as in-process nodes answering QUERY tasks."""
    gw = MemoryGateway()
    for dept, runner in runners.items():

        async def behaviour(
            request: TaskRequest, weights: Weights | None, *, node: str = dept, r: Any = runner
        ) -> TaskOutcome:
            assert weights is not None
            answer = await asyncio.to_thread(r.query, request.config, weights)
            return TaskOutcome(node, answer.num_samples, MappingProxyType({}), answer.aggregates)

        gw.connect(NodeInfo(dept, RETAIL_DEPARTMENTS[dept]), behaviour)
    return gw


@contextmanager
def running_query(runners: Mapping[str, DispatchRunner], model: CurrentModel) -> Iterator[Any]:
    """A blocking query function over an event loop in a thread (stopped on exit)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-query-loop", daemon=True)
    thread.start()
    try:
        runner = FederatedQuery(memory_gateway(runners), lambda _job: model)
        yield runner.blocking(loop, 60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def result_of(ask: Any, query: Any) -> QueryResult:
    """``ask(query)`` typed for the tests."""
    result: QueryResult = ask(query)
    return result
