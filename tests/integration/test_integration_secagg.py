"""Secure aggregation and DP in the real runtime: coordinator, node agents, gRPC over mTLS.

Nodes run ``DeltaRunner`` (the runner of ``clawfed node`` whose fit returns a known delta),
so the coordinator's result can be checked against plain FedAvg of those deltas. Node
processes are real (``python test_integration_secagg.py KIT SEED SAMPLES``) where a node is
killed mid-protocol; elsewhere agents run in this process, over the same TLS stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from integration_support import (
    WAIT_S,
    EventRecorder,
    Procs,
    credentials,
    enroll,
    run,
    running_coordinator,
    store,
    until,
)

from clawfed.aggregation import ConfigValue
from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.server import Coordinator
from clawfed.coordinator.workspace import Workspace
from clawfed.core import TensorSpec, Weights
from clawfed.governance.artifacts import ArtifactStore
from clawfed.governance.jobs import JobStatus, JobStore
from clawfed.governance.registry import ModelRegistry
from clawfed.node.agent import NodeAgent
from clawfed.node.dispatch import DispatchRunner
from clawfed.node.runner import FitAnswer
from clawfed.privacy.quantize import FixedPoint
from clawfed.security.kit import load_kit

PARAMS = 2000
FRAC_BITS = 20
#: node -> (seed, samples); d and e train like b and c
NODES = {"a": (1, 30), "b": (2, 50), "c": (3, 70), "d": (2, 50), "e": (3, 70)}
TRIO = ("a", "b", "c")


def node_delta(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, PARAMS).astype(np.float32)


class DeltaRunner(DispatchRunner):
    """``clawfed node``'s runner whose fit returns the node's known delta."""

    def __init__(self, seed: int, samples: int) -> None:
        super().__init__({})
        self._delta = node_delta(seed)
        self._samples = samples

    def fit(self, config: Mapping[str, ConfigValue], weights: Weights) -> FitAnswer:
        del config
        assert weights.spec() == (TensorSpec("w", "float32", (PARAMS,)),)
        return FitAnswer(self._samples, {"loss": 0.5}, Weights({"w": self._delta}))


def expected_mean(names: Sequence[str]) -> np.ndarray:
    total = sum(NODES[n][1] * node_delta(NODES[n][0]).astype(np.float64) for n in names)
    return np.asarray(total / sum(NODES[n][1] for n in names))


ATOL = len(TRIO) * 0.5 / 2**FRAC_BITS + 1e-6  # quantization (per unit weight) + float32


def job_text(
    name: str, privacy: str = "", *, rounds: int = 1, deadline: float = 20, nodes: str = ""
) -> str:
    text = f"participants: [{nodes}]\n" if nodes else ""
    text += (
        f"name: {name}\nmodel: {{name: noop, settings: {{params: {PARAMS}}}}}\n"
        f"rounds: {rounds}\nmin_nodes: 2\nround_deadline_s: {deadline}\nmax_retries: 0\n"
    )
    return text + (f"privacy:\n{privacy}" if privacy else "")


CLI_ENV = {"COLUMNS": "250", "NO_COLOR": "1", "CLAWFED_WORKSPACE": None}
SECURE = f"  secure_aggregation: {{threshold: 2, clip: 1.0, frac_bits: {FRAC_BITS}}}\n"


@contextlib.asynccontextmanager
async def agents(kits: Mapping[str, Path]) -> AsyncIterator[list[NodeAgent]]:
    """One in-process ``NodeAgent`` per kit with its ``DeltaRunner``; stopped on exit."""
    stop = asyncio.Event()
    made = [NodeAgent(credentials(k), DeltaRunner(*NODES[n])) for n, k in kits.items()]
    tasks = [
        asyncio.create_task(a.run(stop), name=f"agent:{n}") for a, n in zip(made, kits, strict=True)
    ]
    try:
        for agent in made:
            await asyncio.wait_for(agent.connected.wait(), WAIT_S)
        yield made
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=WAIT_S)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_job(c: Coordinator, text: str) -> Any:
    spec = parse_job(text)
    c.jobs.submit(spec, actor="test")
    await asyncio.wait_for(c.jobs.wait(spec.name), 2 * WAIT_S)
    return c.jobs.info(spec.name)


def version_weights(ws: Workspace, version_id: str) -> np.ndarray:
    with store(ws) as db:
        v = ModelRegistry(db).get(version_id)
    return np.asarray(ArtifactStore(ws.artifacts / v.job_id).load(v.artifact_path, v.sha256)["w"])


def test_secure_round_equals_plain_fedavg_and_stores_no_individual_update(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    kits = {n: enroll(workspace, n) for n in TRIO}

    async def scenario() -> tuple[Any, Any]:
        async with running_coordinator(workspace) as c, agents(kits):
            await until(lambda: len(c.hub.live_nodes()) == len(TRIO), "nodes to connect")
            plain = await run_job(c, job_text("plain"))
            secure = await run_job(c, job_text("secure", SECURE))
            return plain, secure

    with caplog.at_level(logging.DEBUG):
        plain, secure = run(scenario())
    assert plain.status == JobStatus.COMPLETED, plain.message
    assert secure.status == JobStatus.COMPLETED, secure.message
    w_plain = version_weights(workspace, "plain@v1")
    w_secure = version_weights(workspace, "secure@v1")
    np.testing.assert_allclose(w_secure, expected_mean(TRIO), rtol=0, atol=ATOL)
    np.testing.assert_allclose(w_secure, w_plain, rtol=0, atol=ATOL)
    with store(workspace) as db:
        v = ModelRegistry(db).get("secure@v1")
        assert sorted((p.node_id, p.num_samples) for p in v.participants) == [
            ("a", 30), ("b", 50), ("c", 70),
        ]  # fmt: skip
        rows = _all_rows(db.engine)
    # What the coordinator kept of the secure job: no node's delta, no encoded (unmasked)
    # input. The plain job's artifact holds the same mean, proving the scan reads artifacts.
    fp = FixedPoint(1.0, FRAC_BITS, 100_000, 3, 64)
    spec = (TensorSpec("w", "float32", (PARAMS,)),)
    needles = {}
    for name in TRIO:
        seed, samples = NODES[name]
        d = node_delta(seed)
        needles[f"{name} delta"] = d.tobytes()[8:40]
        encoded = fp.encode(Weights({"w": d}), samples, spec)
        needles[f"{name} encoded"] = encoded.tobytes()[8:40]
    blobs = [*_files(workspace.root), rows.encode()]
    blobs += [r.getMessage().encode() for r in caplog.records]
    found = sorted(k for k, n in needles.items() if any(n in b for b in blobs))
    assert found == []
    assert any(w_secure.tobytes()[8:40] in b for b in _files(workspace.root))


def _files(root: Path) -> Iterator[bytes]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path.read_bytes()


def _all_rows(engine: sa.Engine) -> str:
    meta = sa.MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return "\n".join(repr(list(conn.execute(t.select()))) for t in meta.sorted_tables)


def _kill_on(
    c: Coordinator, procs: Mapping[str, Any], victims: Sequence[str], phase: str
) -> Callable[[str, Mapping[str, Any]], None]:
    """SIGKILL ``victims`` the moment ``phase`` closes (their answer to it already counted)."""

    def listener(kind: str, data: Mapping[str, Any]) -> None:
        if kind == "secagg_phase" and data["phase"] == phase:
            for name in victims:
                procs[name].sigkill()

    c.listeners.append(listener)
    return listener


def _node_argv(kit: Path, name: str) -> list[str]:
    seed, samples = NODES[name]
    return [sys.executable, str(Path(__file__).resolve()), str(kit), str(seed), str(samples)]


@pytest.mark.slow
def test_nodes_killed_after_sending_masked_input(workspace: Workspace, procs: Procs) -> None:
    """Job 1 (a, b, c; t = 2): c is killed once the masked inputs are in: n - t = 1 dropout,
    the sum still holds c's input. Job 2 (a, d, e; t = 2): d and e are killed: the round
    fails with the reason. Victims are real node processes; a and b run in this process."""
    kits = {n: enroll(workspace, n) for n in NODES}
    victims = ("c", "d", "e")

    async def scenario() -> tuple[Any, Any, list[dict[str, Any]]]:
        async with running_coordinator(workspace) as c:
            events = EventRecorder(c)
            started = {n: procs.start(n, _node_argv(kits[n], n)) for n in victims}
            async with agents({n: kits[n] for n in ("a", "b")}):
                # node processes import torch: under load that takes long, hence the wide wait
                await until(lambda: len(c.hub.live_nodes()) == 5, "nodes to connect", 4 * WAIT_S)
                kill = _kill_on(c, started, ["c"], "secagg_mask")
                one = await run_job(c, job_text("one", SECURE, deadline=15, nodes="a, b, c"))
                c.listeners.remove(kill)
                _kill_on(c, started, ["d", "e"], "secagg_mask")
                two = await run_job(c, job_text("two", SECURE, deadline=15, nodes="a, d, e"))
                return one, two, events.of("secagg_phase")

    one, two, phases = run(scenario(), 6 * WAIT_S)
    masks = [p["nodes"] for p in phases if p["phase"] == "secagg_mask"]
    assert masks == [["a", "b", "c"], ["a", "d", "e"]]  # every masked input came before a kill
    assert one.status == JobStatus.COMPLETED, one.message
    np.testing.assert_allclose(
        version_weights(workspace, "one@v1"), expected_mean(["a", "b", "c"]), atol=ATOL
    )
    with store(workspace) as db:
        [r1] = JobStore(db).rounds("one")
    assert [p.node_id for p in r1.participants] == ["a", "b", "c"]
    assert [(d.node_id, d.reason.split(":")[0]) for d in r1.dropped] == [("c", "secagg_unmask")]
    assert two.status == JobStatus.FAILED
    assert "secure aggregation failed in phase secagg_unmask" in two.message
    assert "only 1 of 3 client(s) answered the unmask request, threshold is 2" in two.message


def test_dp_job_records_epsilon_per_version_and_stops_at_the_budget(
    workspace: Workspace,
) -> None:
    kits = {n: enroll(workspace, n) for n in TRIO}
    privacy = SECURE.replace("clip: 1.0", "clip: 2.0") + (
        "  dp: {mode: central, clip_norm: 1.0, delta: 1.0e-5, noise_multiplier: 2.0, "
        "target_epsilon: 4.5}\n"
    )

    async def scenario() -> Any:
        async with running_coordinator(workspace) as c, agents(kits):
            await until(lambda: len(c.hub.live_nodes()) == len(TRIO), "nodes to connect")
            return await run_job(c, job_text("private", privacy, rounds=5))

    info = run(scenario())
    assert info.status == JobStatus.FAILED
    assert "privacy budget exhausted: round 4 would spend" in info.message
    with store(workspace) as db:
        versions = ModelRegistry(db).list()
    eps = [v.metrics["privacy.epsilon"] for v in versions]
    assert [v.version_id for v in versions] == ["private@v1", "private@v2", "private@v3"]
    assert 0 < eps[0] < eps[1] < eps[2] <= 4.5
    from typer.testing import CliRunner  # the CLI loads every command: not in node processes

    from clawfed.cli.main import app

    shown = CliRunner(env=CLI_ENV).invoke(
        app, ["models", "show", "private@v3", "-w", str(workspace.root)]
    )
    assert shown.exit_code == 0, shown.output
    assert f"ε = {eps[2]:.3f} at δ = 1e-05" in shown.stdout
    assert "target 4.5" in shown.stdout


# ---- a real node process -----------------------------------------------------------------


async def _node(kit_path: Path, seed: int, samples: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await NodeAgent(credentials(load_kit(kit_path)), DeltaRunner(seed, samples)).run(stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    asyncio.run(_node(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
