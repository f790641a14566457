"""The phases of a job around its training rounds: data statistics, and evaluation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clawfed.coordinator.gateway import (
    NodeGateway,
    OutboundModel,
    TaskFailed,
    TaskKind,
    TaskOutcome,
    TaskRequest,
)
from clawfed.core import JobError, NodeInfo, UpdateRejected, Weights

log = logging.getLogger("clawfed.coordinator.phases")

RequestFactory = Callable[[TaskKind, NodeInfo], TaskRequest]


@dataclass(frozen=True)
class PhaseAnswers:
    """Who answered a phase, and why the others did not."""

    outcomes: Mapping[str, TaskOutcome]
    failures: Mapping[str, str]


async def ask_all(
    gateway: NodeGateway,
    nodes: Sequence[NodeInfo],
    make: Callable[[NodeInfo], TaskRequest],
    model: OutboundModel | None,
    deadline_s: float,
) -> PhaseAnswers:
    """Send one task to each node and collect what arrives before the deadline."""
    requests = {n.node_id: make(n) for n in nodes}
    tasks = {
        nid: asyncio.create_task(gateway.run_task(nid, req, model)) for nid, req in requests.items()
    }
    done, pending = await asyncio.wait(tasks.values(), timeout=deadline_s)
    outcomes: dict[str, TaskOutcome] = {}
    failures: dict[str, str] = {}
    for nid, task in tasks.items():
        if task in pending:
            task.cancel()
            await gateway.cancel(nid, requests[nid].task_id, "phase deadline passed")
            failures[nid] = f"no answer within {deadline_s:g} s"
            continue
        try:
            outcomes[nid] = task.result()
        except (TaskFailed, UpdateRejected) as exc:
            failures[nid] = str(exc)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    return PhaseAnswers(outcomes, failures)


def pooled_standardizer(answers: Mapping[str, TaskOutcome]) -> dict[str, list[float]]:
    """Combine the nodes' STATS answers (count, sum, m2 per feature) into mean and std."""
    from clawfed.data.standardize import Moments, combine  # pandas stays out of start-up

    moments = []
    for node_id, outcome in answers.items():
        w = outcome.weights
        if w is None or {"count", "sum", "m2"} - set(w):
            raise JobError(f"node {node_id}: a stats answer must hold count, sum and m2")
        total = np.asarray(w["sum"], dtype=np.float64)
        m2 = np.asarray(w["m2"], dtype=np.float64)
        moments.append(Moments(count=int(w["count"].reshape(-1)[0]), sum=total, m2=m2))
    pooled = combine(moments).to_dict()
    return {"mean": [float(v) for v in pooled["mean"]], "std": [float(v) for v in pooled["std"]]}


def evaluation_metrics(
    answers: Mapping[str, TaskOutcome],
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """Per-node holdout metrics and holdout sizes from EVALUATE answers."""
    metrics = {nid: dict(o.metrics) for nid, o in answers.items()}
    sizes = {nid: o.num_samples for nid, o in answers.items()}
    return metrics, sizes


def weighted_mean(
    per_node: Mapping[str, Mapping[str, float]], sizes: Mapping[str, int]
) -> dict[str, float]:
    """Sample-weighted mean of each metric over the nodes reporting it."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for nid, values in per_node.items():
        n = max(sizes.get(nid, 0), 0)
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value * n
            weights[name] = weights.get(name, 0.0) + n
    return {k: sums[k] / weights[k] for k in sums if weights[k] > 0}


def initial_check(weights: Weights | None, node_id: str) -> Weights:
    """The weights an INIT answer must carry."""
    if weights is None or len(weights) == 0:
        raise JobError(f"node {node_id} returned no initial weights")
    weights.check_finite()
    return weights


def describe_failures(failures: Mapping[str, str]) -> str:
    """One line naming each node that did not answer and why."""
    return "; ".join(f"{nid}: {why}" for nid, why in sorted(failures.items())) or "none"


def merge(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """Later mappings win."""
    out: dict[str, Any] = {}
    for p in parts:
        out.update(p)
    return out


async def standardizer_phase(
    gateway: NodeGateway,
    nodes: Sequence[NodeInfo],
    make: Callable[[NodeInfo], TaskRequest],
    *,
    min_nodes: int,
    deadline_s: float,
    job: str,
) -> dict[str, list[float]]:
    """Ask ``nodes`` for their feature moments (STATS tasks) and pool them.

    Raises
    ------
    JobError
        When fewer than ``min_nodes`` answer before the deadline.
    """
    answers = await ask_all(gateway, nodes, make, None, deadline_s)
    if len(answers.outcomes) < min_nodes:
        raise JobError(
            f"job {job}: only {len(answers.outcomes)} node(s) sent data statistics, "
            f"min_nodes={min_nodes} ({describe_failures(answers.failures)})"
        )
    return pooled_standardizer(answers.outcomes)
