"""Round overhead of the clawfed runtime itself (no-op trainer), against the loopback floor.

Each case starts a real coordinator process and N real node processes that talk over mutual
TLS on 127.0.0.1, runs a 10-round job whose model is ``params`` float32 zeros, and reads:

- round times from the coordinator's store (first to last byte of each round);
- ``coordinator_peak_rss_mb`` from the coordinator's /proc/PID/status (VmHWM);
- bytes on the wire per round, against the ideal 2 × N × model bytes: the kernel's TCP
  counters (``ss -ti``: bytes acked + bytes received) of the nodes' TLS connections to the
  coordinator, read once every node is connected and again after the job (TLS record and
  HTTP/2 framing included); without ``ss``, the node processes' /proc/PID/io read and write
  totals stand in (these also count file reads, e.g. lazy imports);
- ``floor_s``, measured in the same run: N × (serialize + send the bytes over a loopback TCP
  socket and back + deserialize) for one model.

Also reported: ``round_cycle_median_s`` (start to start of consecutive rounds, so it adds the
aggregation result, the artifact and the store writes between rounds),
``coordinator_base_rss_mb`` (VmRSS once the nodes are connected, before the job), the CPU
seconds per round of the coordinator and of all nodes together (/proc/PID/stat, the init task
included), and the 1-minute load average before the case started its processes (other work on the
machine).

Usage: ``python bench/round_overhead.py [--quick] [--case PARAMS:N ...] [--json] [--rounds 10]
[--chunk-size B]``;
with ``--json`` the JSON lines go to stdout and the table to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clawfed.coordinator.config import save_settings, settings_from_mapping
from clawfed.coordinator.workspace import enroll_node, init_workspace, open_workspace
from clawfed.governance.jobs import JobStore
from clawfed.governance.nodes import NodeRegistry

FULL = [(10_000, 2), (10_000, 5), (10_000, 10), (10_000_000, 2), (10_000_000, 5), (10_000_000, 10)]
QUICK = [(10_000, 5), (10_000_000, 5)]


@dataclass
class Result:
    params: int
    nodes: int
    round_median_s: float
    round_min_s: float
    round_max_s: float
    floor_s: float
    coordinator_peak_rss_mb: float
    wire_bytes_per_round: int
    ideal_bytes_per_round: int
    coordinator_base_rss_mb: float
    round_cycle_median_s: float
    coordinator_cpu_s_per_round: float
    nodes_cpu_s_per_round: float
    load_1m: float

    @property
    def x_floor(self) -> float:
        return self.round_median_s / self.floor_s

    @property
    def wire_ratio(self) -> float:
        return self.wire_bytes_per_round / self.ideal_bytes_per_round


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_floor(params: int, repeats: int = 5) -> float:
    """Seconds for one model: serialize, send over loopback TCP and back, deserialize."""
    model = np.random.default_rng(0).standard_normal(params).astype(np.float32)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            buf = bytearray(1 << 20)
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    return
                conn.sendall(memoryview(buf)[:n])

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    client = socket.create_connection(("127.0.0.1", port))
    best = float("inf")
    size = model.nbytes
    back = bytearray(size)
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = model.tobytes()
        sender = threading.Thread(target=client.sendall, args=(data,))
        sender.start()
        view = memoryview(back)
        got = 0
        while got < size:
            got += client.recv_into(view[got:])
        sender.join()
        out = np.frombuffer(back, dtype=np.float32).copy()
        best = min(best, time.perf_counter() - t0)
        assert out.shape == model.shape
    client.close()
    thread.join(timeout=5)
    server.close()
    return best


def io_bytes(pid: int) -> int:
    text = Path(f"/proc/{pid}/io").read_text()
    vals = dict(line.split(": ") for line in text.splitlines())
    return int(vals["rchar"]) + int(vals["wchar"])


def tcp_bytes(port: int) -> tuple[int, int] | None:
    """(connections, bytes sent and acked + received) of client sockets dialing ``port``."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    out = subprocess.run(
        [ss, "-tinH", "state", "established", "dport", "=", f":{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    conns = total = 0
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            conns += 1
        for field in line.split():
            name, _, value = field.partition(":")
            if name in ("bytes_acked", "bytes_received") and value.isdigit():
                total += int(value)
    return conns, total


def wire_snapshot(port: int, pids: list[int]) -> int:
    counted = tcp_bytes(port)
    return counted[1] if counted is not None else sum(io_bytes(p) for p in pids)


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (all their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def log_tails(logs: Path, lines: int = 15) -> str:
    """The last lines of every process log, for an error message."""
    parts = []
    for f in sorted(logs.glob("*.log")):
        tail = f.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {f.name}\n" + "\n".join(tail))
    return "\n".join(parts)


def wait_connected(
    ws_root: Path, nodes: int, node_procs: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    """Wait until the store says every node holds a session (imports can take seconds)."""
    db = open_workspace(ws_root).database()
    try:
        registry = NodeRegistry(db)
        deadline = time.time() + 120
        while sum(r.connected for r in registry.list()) < nodes:
            if time.time() > deadline or any(p.poll() is not None for p in node_procs):
                raise RuntimeError(f"nodes did not connect\n{log_tails(logs)}")
            time.sleep(0.2)
    finally:
        db.close()


def run_case(
    params: int, nodes: int, rounds: int, root: Path, chunk_size: int | None = None
) -> Result:
    load = os.getloadavg()[0]  # before this case starts anything: the machine's other work
    ws = init_workspace(root / "ws", port=free_port())
    if chunk_size is not None:
        data = ws.settings.model_dump(mode="json")
        data["chunk_size"] = chunk_size
        save_settings(ws.root, settings_from_mapping(data, source="--chunk-size"))
        ws = open_workspace(ws.root)
    kits = [root / f"node{i}.kit" for i in range(nodes)]
    for i, kit in enumerate(kits):
        enroll_node(ws, f"node{i}", f"dept{i}", kit)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    py = [sys.executable, "-m", "clawfed"]
    logs = (root / "logs").resolve()
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    coord = subprocess.Popen(
        [*py, "coordinator", str(ws.root)],
        env=env,
        stdout=open(logs / "coordinator.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    procs.append(coord)
    try:
        deadline = time.time() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", ws.settings.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or coord.poll() is not None:
                    raise RuntimeError(f"coordinator did not start; see {logs}") from None
                time.sleep(0.1)
        node_procs = [
            subprocess.Popen(
                [*py, "node", "--kit", str(k)],
                env=env,
                stdout=open(logs / f"node{i}.log", "wb"),
                stderr=subprocess.STDOUT,
            )
            for i, k in enumerate(kits)
        ]
        procs.extend(node_procs)
        wait_connected(ws.root, nodes, node_procs, logs)
        node_pids = [p.pid for p in node_procs]
        base_rss = rss_mb(coord.pid, "VmRSS")
        before = wire_snapshot(ws.settings.port, node_pids)
        cpu_before = (cpu_s([coord.pid]), cpu_s(node_pids))
        job = root / "job.yaml"
        job.write_text(
            f"name: bench\nmodel: {{name: noop, settings: {{params: {params}}}}}\n"
            f"rounds: {rounds}\nmin_nodes: {nodes}\nround_deadline_s: 600\nmax_retries: 0\n"
            "evaluate_every: 0\n"
        )
        submit = subprocess.run(
            [*py, "job", "submit", str(job), "-w", str(ws.root)],
            env=env,
            capture_output=True,
            text=True,
        )
        if submit.returncode != 0:
            raise RuntimeError(f"job submit failed:\n{submit.stdout}{submit.stderr}")
        store_ws = open_workspace(ws.root)
        db = store_ws.database()
        jobs = JobStore(db)
        deadline = time.time() + 3600
        while True:
            rec = jobs.get("bench")
            if rec.status.value in ("completed", "failed", "cancelled"):
                break
            if time.time() > deadline:
                raise RuntimeError("benchmark job did not finish in an hour")
            time.sleep(0.2)
        if rec.status.value != "completed":
            raise RuntimeError(f"benchmark job {rec.status}: {rec.message}\n{log_tails(logs)}")
        after = wire_snapshot(ws.settings.port, node_pids)
        cpu_after = (cpu_s([coord.pid]), cpu_s(node_pids))
        rss = rss_mb(coord.pid)
        done = [r for r in jobs.rounds("bench") if r.status.value == "completed" and r.finished_at]
        durations = [(r.finished_at - r.started_at).total_seconds() for r in done]
        cycles = [
            (b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(done)
        ]
        db.close()
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    model_bytes = params * 4
    wire = (after - before - model_bytes) // rounds  # the init task sends one model up once
    return Result(
        params=params,
        nodes=nodes,
        round_median_s=statistics.median(durations),
        round_min_s=min(durations),
        round_max_s=max(durations),
        floor_s=nodes * loopback_floor(params),
        coordinator_peak_rss_mb=round(rss, 1),
        wire_bytes_per_round=int(wire),
        ideal_bytes_per_round=2 * nodes * model_bytes,
        coordinator_base_rss_mb=round(base_rss, 1),
        round_cycle_median_s=statistics.median(cycles) if cycles else float("nan"),
        coordinator_cpu_s_per_round=round((cpu_after[0] - cpu_before[0]) / rounds, 3),
        nodes_cpu_s_per_round=round((cpu_after[1] - cpu_before[1]) / rounds, 3),
        load_1m=round(load, 2),
    )


HEADER = (
    f"{'params':>10} {'N':>3} {'median s':>9} {'min s':>7} {'max s':>7} {'floor s':>8} "
    f"{'x floor':>7} {'cycle s':>8} {'coord MB':>9} {'base MB':>8} {'wire/ideal':>10} "
    f"{'cpu c/n s':>11} {'load':>5}"
)


def table_row(r: Result) -> str:
    """One line of the human-readable table."""
    return (
        f"{r.params:>10} {r.nodes:>3} {r.round_median_s:>9.3f} {r.round_min_s:>7.3f} "
        f"{r.round_max_s:>7.3f} {r.floor_s:>8.3f} {r.x_floor:>7.2f} "
        f"{r.round_cycle_median_s:>8.3f} {r.coordinator_peak_rss_mb:>9.1f} "
        f"{r.coordinator_base_rss_mb:>8.1f} {r.wire_ratio:>10.4f} "
        f"{r.coordinator_cpu_s_per_round:>5.2f}/{r.nodes_cpu_s_per_round:<5.2f} {r.load_1m:>5.1f}"
    )


def parse_case(text: str) -> tuple[int, int]:
    """``"10000000:10"`` -> (10_000_000, 10)."""
    params, sep, nodes = text.replace("_", "").partition(":")
    if not sep or not params.isdigit() or not nodes.isdigit() or int(nodes) < 1:
        raise SystemExit(f"--case must look like PARAMS:NODES (e.g. 10000000:10), got {text!r}")
    return int(params), int(nodes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only (10k, N=5) and (10M, N=5)")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per case on stdout (table: stderr)"
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="coordinator chunk_size (default: its own)"
    )
    parser.add_argument(
        "--case",
        action="append",
        default=None,
        metavar="PARAMS:N",
        help="run only this case (repeatable), e.g. --case 10000000:10",
    )
    args = parser.parse_args()
    cases = QUICK if args.quick else FULL
    if args.case:
        cases = [parse_case(c) for c in args.case]
    table = sys.stderr if args.json else sys.stdout
    print(HEADER, file=table, flush=True)
    for params, nodes in cases:
        with tempfile.TemporaryDirectory(prefix="clawfed-bench-") as tmp:
            r = run_case(params, nodes, args.rounds, Path(tmp), args.chunk_size)
        print(table_row(r), file=table, flush=True)
        if args.json:
            print(json.dumps(asdict(r)), flush=True)


if __name__ == "__main__":
    main()
