"""Secure-aggregation round time against plain FedAvg on the real runtime (gRPC, mutual TLS).

Each case starts a coordinator (in this process, its own event loop) and N nodes, then runs
two jobs on the same connected nodes, ``rounds`` rounds each, model = ``params`` float32
(the no-op model, so the numbers are the runtime's and the protocol's, not training's):

- ``plain``: FedAvg, every node uploads its delta;
- ``secure``: the same with ``privacy.secure_aggregation`` (SecAgg, or SecAgg+ with
  ``--variant secagg_plus``): advertise keys → encrypted shares → masked ring vector →
  unmasking, each a task over the session stream.

Reported per job: median / min / max round time (the store's first to last byte of a round),
node CPU seconds per round (all node processes together, /proc/PID/stat; with in-process
agents the whole bench process, coordinator included, so it is an upper bound) and payload
bytes each node uploads per round (the coordinator's count of update / message payload bytes,
without gRPC or TLS framing). ``--agents inproc`` runs the nodes as ``NodeAgent`` tasks in this
process (for N too large for one process per node on the machine); ``process`` (default)
runs ``clawfed node`` processes.

Usage: ``python bench/secagg_round.py [--nodes 10] [--params 1000000] [--rounds 3]
[--variant secagg|secagg_plus] [--ring-bits 32|64] [--agents process|inproc] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from clawfed.coordinator.jobspec import parse_job
from clawfed.coordinator.server import Coordinator
from clawfed.coordinator.workspace import Workspace, enroll_node, init_workspace
from clawfed.node.agent import Credentials, NodeAgent
from clawfed.node.dispatch import DispatchRunner
from clawfed.security.kit import load_kit


@dataclass
class Result:
    mode: str
    nodes: int
    params: int
    agents: str
    ring_bits: int | None
    round_median_s: float
    round_min_s: float
    round_max_s: float
    node_cpu_s_per_round: float
    upload_bytes_per_node_round: int
    load_1m: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (from /proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def job_yaml(name: str, args: argparse.Namespace, secure: bool) -> str:
    text = (
        f"name: {name}\nmodel: {{name: noop, settings: {{params: {args.params}}}}}\n"
        f"rounds: {args.rounds}\nmin_nodes: {args.nodes}\nround_deadline_s: 900\n"
        "max_retries: 0\nevaluate_every: 0\n"
    )
    if secure:
        sa = [f"variant: {args.variant}"]
        if args.ring_bits == 32:  # weights <= 1000, 16 fraction bits: no sum can wrap in 2^32
            sa += ["ring_bits: 32", "max_weight: 1000", "frac_bits: 16"]
        text += f"privacy:\n  secure_aggregation: {{{', '.join(sa)}}}\n"
    return text


async def run_job(c: Coordinator, name: str, text: str, pids: list[int] | None) -> tuple:
    spec = parse_job(text)
    cpu0 = cpu_s(pids) if pids else time.process_time()
    c.jobs.submit(spec, actor="bench")
    await c.jobs.wait(name)
    cpu1 = cpu_s(pids) if pids else time.process_time()
    info = c.jobs.info(name)
    if info.status != "completed":
        raise RuntimeError(f"job {name} {info.status}: {info.message}")
    rounds = [r for r in c.jobs.store.rounds(name) if r.finished_at is not None]
    durations = [(r.finished_at - r.started_at).total_seconds() for r in rounds]
    up = sum(r.bytes_up for r in rounds) / len(rounds) / len(rounds[0].participants)
    return durations, (cpu1 - cpu0) / len(rounds), int(up)


async def run_case(args: argparse.Namespace, root: Path) -> list[Result]:
    load = os.getloadavg()[0]
    ws: Workspace = init_workspace(root / "ws", port=free_port())
    kits = [root / f"node{i}.kit" for i in range(args.nodes)]
    for i, kit in enumerate(kits):
        enroll_node(ws, f"node{i}", f"dept{i}", kit)
    c = Coordinator(ws)
    await c.start()
    procs: list[subprocess.Popen[bytes]] = []
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        if args.agents == "process":
            logs = root / "logs"
            logs.mkdir()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            for i, kit in enumerate(kits):
                with open(logs / f"node{i}.log", "wb") as out:
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "clawfed", "node", "--kit", str(kit)],
                            env=env, stdout=out, stderr=subprocess.STDOUT,
                        )
                    )  # fmt: skip
        else:
            for kit in kits:
                k = load_kit(kit)
                creds = Credentials(
                    k.node_id, k.coordinator, k.ca_cert.encode(), k.cert.encode(), k.key.encode()
                )
                tasks.append(asyncio.create_task(NodeAgent(creds, DispatchRunner({})).run(stop)))
        deadline = time.monotonic() + 600
        while len(c.hub.live_nodes()) < args.nodes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(c.hub.live_nodes())} nodes connected")
            await asyncio.sleep(0.2)
        pids = [p.pid for p in procs] or None
        out = []
        for mode in ("plain", "secure"):
            text = job_yaml(mode, args, mode == "secure")
            durations, cpu, up = await run_job(c, mode, text, pids)
            out.append(
                Result(
                    mode=mode if mode == "plain" else args.variant,
                    nodes=args.nodes,
                    params=args.params,
                    agents=args.agents,
                    ring_bits=(args.ring_bits or 64) if mode == "secure" else None,
                    round_median_s=round(statistics.median(durations), 3),
                    round_min_s=round(min(durations), 3),
                    round_max_s=round(max(durations), 3),
                    node_cpu_s_per_round=round(cpu, 2),
                    upload_bytes_per_node_round=up,
                    load_1m=round(load, 2),
                )
            )
        return out
    finally:
        stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        await c.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", choices=("secagg", "secagg_plus"), default="secagg")
    parser.add_argument("--ring-bits", type=int, choices=(32, 64), default=None)
    parser.add_argument("--agents", choices=("process", "inproc"), default="process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clawfed-secagg-bench-") as tmp:
        results = asyncio.run(run_case(args, Path(tmp)))
    plain, secure = results
    for r in results:
        line = json.dumps(asdict(r)) if args.json else (
            f"{r.mode:>11} N={r.nodes:<3} params={r.params:<8} agents={r.agents:<7} "
            f"ring={r.ring_bits or '-':<3} median {r.round_median_s:7.3f} s "
            f"(min {r.round_min_s:.3f}, max {r.round_max_s:.3f})  node CPU/round "
            f"{r.node_cpu_s_per_round:6.2f} s  upload/node/round "
            f"{r.upload_bytes_per_node_round:>10,} B  load {r.load_1m}"
        )  # fmt: skip
        sys.stdout.write(line + "\n")
    ratio = secure.round_median_s / plain.round_median_s
    sys.stdout.write(f"secure / plain round time: {ratio:.2f}x\n")


if __name__ == "__main__":
    main()
