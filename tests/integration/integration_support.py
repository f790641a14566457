"""Helpers for the federation runtime tests: workspaces, processes, in-process runtimes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc import aio

from clawfed import PROTOCOL_VERSION
from clawfed.coordinator.config import save_settings, settings_from_mapping
from clawfed.coordinator.server import Coordinator
from clawfed.coordinator.workspace import Workspace, enroll_node, init_workspace, open_workspace
from clawfed.governance.audit import AuditLog, AuditRecord
from clawfed.governance.db import Database
from clawfed.node.agent import Credentials, NodeAgent
from clawfed.node.dispatch import DispatchRunner
from clawfed.node.runner import TaskRunner
from clawfed.security.kit import Kit, load_kit
from clawfed.wire._proto import federation_pb2 as pb
from clawfed.wire._proto import federation_pb2_grpc as pb_grpc
from clawfed.wire.eof import STREAM_END
from common_support import free_port, wait_until

#: Upper bound of every wait in these tests; a healthy run needs a fraction of it.
WAIT_S = 60.0
#: Settings that keep the tests fast: heartbeats every second, a silent node dropped after 3 s
#: (a node gives up on a silent coordinator after 4 s). Shorter still loses sessions when a
#: loaded test machine starves a process for a moment.
FAST_SETTINGS: Mapping[str, object] = {"heartbeat_interval_s": 1.0, "heartbeat_misses": 3}
HERE = Path(__file__).resolve()

T = TypeVar("T")


# ---- small utilities -------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 3 * WAIT_S) -> T:
    """Run ``coro`` in a fresh event loop with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


async def until(check: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
    """``wait_until`` for coroutines: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.05)


# ---- workspaces ------------------------------------------------------------------------


def make_workspace(
    root: Path, *, allowlist: tuple[str, ...] | None = None, **overrides: object
) -> Workspace:
    """``clawfed init`` in ``root`` on a free port, then fast test settings and ``overrides``."""
    ws = init_workspace(root, port=free_port(), allowlist=allowlist)
    data: dict[str, Any] = ws.settings.model_dump(mode="json")
    data.update(FAST_SETTINGS)
    data.update(overrides)
    save_settings(root, settings_from_mapping(data, source="integration test settings"))
    return open_workspace(root)


def enroll(ws: Workspace, node_id: str, department: str | None = None) -> Path:
    """Enroll ``node_id`` and return the path of its kit (next to the workspace)."""
    path = ws.root.parent / f"{node_id}.kit"
    enroll_node(ws, node_id, department or f"dept-{node_id}", path)
    return path


def credentials(kit: Kit | Path) -> Credentials:
    """The agent credentials of a kit (or of the kit file at a path)."""
    k = load_kit(kit) if isinstance(kit, Path) else kit
    return Credentials(
        k.node_id, k.coordinator, k.ca_cert.encode(), k.cert.encode(), k.key.encode()
    )


@contextlib.contextmanager
def store(ws: Workspace) -> Any:
    """The workspace's SQL store, opened by the test (the coordinator may use it too)."""
    db = ws.database()
    try:
        yield db
    finally:
        db.close()


def refusals(db: Database, reason: str | None = None) -> list[AuditRecord]:
    """Audit records of refused connections (with ``reason`` if given)."""
    records = AuditLog(db).list(action="connect.refused", limit=10_000)
    return [r for r in records if reason is None or r.detail.get("reason") == reason]


def audit(db: Database, action: str) -> list[AuditRecord]:
    """Audit records with ``action``, oldest first."""
    return AuditLog(db).list(action=action, limit=10_000)


def job_yaml(
    name: str,
    *,
    params: int = 1000,
    rounds: int = 1,
    min_nodes: int = 1,
    deadline_s: float = 10.0,
    max_retries: int = 0,
    sleep_s: float = 0.0,
) -> str:
    """A no-op model job file."""
    settings = f"params: {params}" + (f", sleep_s: {sleep_s}" if sleep_s else "")
    return (
        f"name: {name}\nmodel: {{name: noop, settings: {{{settings}}}}}\n"
        f"rounds: {rounds}\nmin_nodes: {min_nodes}\nround_deadline_s: {deadline_s}\n"
        f"max_retries: {max_retries}\n"
    )


# ---- the coordinator and nodes in this process -----------------------------------------


@contextlib.asynccontextmanager
async def running_coordinator(ws: Workspace) -> AsyncIterator[Coordinator]:
    """A started ``Coordinator`` of ``ws`` in this event loop, stopped on exit."""
    coordinator = Coordinator(ws)
    try:
        await coordinator.start()
        yield coordinator
    finally:
        await coordinator.stop()


@dataclass
class RunningAgents:
    """Node agents running as tasks of this event loop."""

    agents: list[NodeAgent]
    tasks: list[asyncio.Task[None]]
    stop: asyncio.Event
    events: list[tuple[str, str]] = field(default_factory=list)

    async def connected(self, timeout_s: float = WAIT_S) -> None:
        """Wait until every agent holds a welcomed session."""
        for agent in self.agents:
            await asyncio.wait_for(agent.connected.wait(), timeout_s)


@contextlib.asynccontextmanager
async def running_agents(
    kits: Sequence[Path],
    runner: Callable[[], TaskRunner] | None = None,
    **agent_options: Any,
) -> AsyncIterator[RunningAgents]:
    """One ``NodeAgent`` per kit, with the runner ``clawfed node`` uses unless ``runner``
    makes another; each is stopped (goodbye) and awaited on exit."""
    stop = asyncio.Event()
    group = RunningAgents([], [], stop)
    for kit in kits:
        creds = credentials(kit)

        def note(what: str, node_id: str = creds.node_id) -> None:
            group.events.append((node_id, what))

        made = runner() if runner is not None else DispatchRunner({})
        agent = NodeAgent(creds, made, on_event=note, **agent_options)
        group.agents.append(agent)
        group.tasks.append(asyncio.create_task(agent.run(stop), name=f"agent:{creds.node_id}"))
    try:
        yield group
    finally:
        stop.set()
        if group.tasks:
            await asyncio.wait(group.tasks, timeout=WAIT_S)
        for task in group.tasks:
            task.cancel()
        await asyncio.gather(*group.tasks, return_exceptions=True)


class EventRecorder:
    """Records the coordinator's notification events, as a listener of ``Coordinator.events``."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        coordinator.listeners.append(self._record)

    def _record(self, kind: str, data: Mapping[str, Any]) -> None:
        self.seen.append((kind, dict(data)))

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The data of every event of ``kind`` so far."""
        return [d for k, d in self.seen if k == kind]


# ---- one-shot raw sessions --------------------------------------------------------------


def channel_credentials(
    ca_pem: bytes, cert_pem: bytes | None = None, key_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials trusting ``ca_pem``, presenting a client certificate when given."""
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


@dataclass(frozen=True)
class Attempt:
    """How one session attempt ended: ``welcome``, ``goodbye`` or ``error``."""

    outcome: str
    code: str
    detail: str


async def try_session(
    address: str,
    creds: grpc.ChannelCredentials,
    *,
    protocol_version: int = PROTOCOL_VERSION,
    timeout_s: float = WAIT_S / 2,
) -> Attempt:
    """Open the node stream once, say hello and report the coordinator's first answer."""
    async with aio.secure_channel(address, creds) as channel:
        call = pb_grpc.FederationStub(channel).Session()
        try:
            await call.write(pb.NodeMessage(hello=pb.Hello(protocol_version=protocol_version)))
            first = await asyncio.wait_for(call.read(), timeout_s)
        except aio.AioRpcError as exc:
            return Attempt("error", exc.code().name, exc.details() or "")
        finally:
            call.cancel()
        if first is STREAM_END:
            return Attempt("error", "STREAM_END", "")
        assert isinstance(first, pb.CoordinatorMessage)
        kind = first.WhichOneof("body")
        if kind == "goodbye":
            return Attempt("goodbye", first.goodbye.code, first.goodbye.message)
        return Attempt(str(kind), "", "")


async def try_admin_call(address: str, creds: grpc.ChannelCredentials) -> Attempt:
    """Call ``Admin.ListJobs`` once and report how it ended."""
    async with aio.secure_channel(address, creds) as channel:
        try:
            await pb_grpc.AdminStub(channel).ListJobs(pb.ListJobsRequest(), timeout=WAIT_S / 2)
        except aio.AioRpcError as exc:
            return Attempt("error", exc.code().name, exc.details() or "")
    return Attempt("ok", "", "")


# ---- subprocesses -----------------------------------------------------------------------


def subprocess_env() -> dict[str, str]:
    """Environment of every child: unbuffered output, wide plain log lines, and the tests
    folder on the path (a test file run as a node script imports ``common_support``)."""
    tests = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH", "")) if p)
    return dict(
        os.environ, PYTHONUNBUFFERED="1", COLUMNS="400", NO_COLOR="1", TERM="dumb", PYTHONPATH=path
    )


def clawfed(*args: str) -> list[str]:
    """The argv of ``python -m clawfed ARGS`` with this interpreter."""
    return [sys.executable, "-m", "clawfed", *args]


def slow_node(kit: Path, extra_fit_s: float) -> list[str]:
    """The argv of a real node process whose fit takes ``extra_fit_s`` longer."""
    return [
        sys.executable,
        str(HERE.parent / "integration_slow_node.py"),
        str(kit),
        str(extra_fit_s),
    ]


def run_cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``clawfed ARGS`` to completion, capturing its output as text."""
    return subprocess.run(
        clawfed(*args),
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@dataclass
class Proc:
    """A child process whose stdout and stderr go to one log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def wait_for_output(self, text: str, timeout_s: float = WAIT_S) -> None:
        """Wait until the process has written ``text``; fail early if it exits."""

        def seen() -> bool:
            if text in self.output():
                return True
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited ({self.popen.returncode}) before writing {text!r}:\n"
                    f"{self.output()[-3000:]}"
                )
            return False

        wait_until(seen, f"{self.name} to write {text!r}", timeout_s)

    def sigkill(self) -> None:
        """Kill the process at once (SIGKILL) and reap it."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=WAIT_S)


class Procs:
    """Every child process a test starts; ``kill_all`` runs at teardown."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._logs.mkdir(parents=True, exist_ok=True)
        self.started: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], *, cwd: Path | None = None) -> Proc:
        """Start ``argv`` with its output in ``<logs>/<name>.log``."""
        log = self._logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=subprocess_env(),
                cwd=cwd,
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def coordinator(self, ws: Workspace, name: str = "coordinator") -> Proc:
        """``clawfed coordinator WS``, returned once it listens."""
        proc = self.start(name, clawfed("coordinator", str(ws.root)))
        proc.wait_for_output(f"on port {ws.settings.port}")
        return proc

    def node(self, kit: Path, name: str | None = None) -> Proc:
        """``clawfed node --kit KIT``."""
        return self.start(name or kit.stem, clawfed("node", "--kit", str(kit)))

    def kill_all(self) -> None:
        """SIGKILL and reap every child still running."""
        for proc in self.started:
            if proc.alive():
                proc.popen.kill()
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=WAIT_S)
