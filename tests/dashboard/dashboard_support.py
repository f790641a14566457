"""A coordinator (with its dashboard) and two nodes as real processes, and users with tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from clawfed.coordinator.config import save_settings, settings_from_mapping
from clawfed.coordinator.workspace import Workspace, enroll_node, init_workspace, open_workspace
from clawfed.governance.policy import Role
from common_support import add_user, free_port, wait_until

WAIT_S = 60.0
T = TypeVar("T")


class Processes:
    """Child processes with their output in log files; all killed by ``stop``."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        """``python -m clawfed ARGS`` with output in ``<logs>/<name>.log``."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="400", NO_COLOR="1", TERM="dumb")
        with (self._logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "clawfed", *args], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    def output(self, name: str) -> str:
        """What process ``name`` wrote so far."""
        return (self._logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def wait_for(self, name: str, text: str) -> None:
        """Wait until process ``name`` wrote ``text``; fail if it exits first."""

        def seen() -> bool:
            if text in self.output(name):
                return True
            if self.procs[name].poll() is not None:
                raise AssertionError(f"{name} exited before writing {text!r}:\n"
                                     f"{self.output(name)[-3000:]}")  # fmt: skip
            return False

        wait_until(seen, f"{name} to write {text!r}")

    def stop(self) -> None:
        """Terminate (then kill) and reap every process."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=WAIT_S)


class LiveFederation:
    """``clawfed coordinator --web-port`` and ``clawfed node`` for credit (c1) and risk (r1)."""

    def __init__(self, root: Path) -> None:
        ws = init_workspace(root / "ws", port=free_port())
        data: dict[str, Any] = ws.settings.model_dump(mode="json")
        data.update({"heartbeat_interval_s": 1.0, "heartbeat_misses": 3})
        save_settings(ws.root, settings_from_mapping(data, source="dashboard test settings"))
        self.ws: Workspace = open_workspace(ws.root)
        self.kits = {}
        for node, dept in (("c1", "credit"), ("r1", "risk")):
            self.kits[node] = root / f"{node}.kit"
            enroll_node(self.ws, node, dept, self.kits[node])
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.procs = Processes(root / "logs")
        self.tokens: dict[str, str] = {}

    def start(self) -> LiveFederation:
        """Start the coordinator and both nodes; return once both nodes are live."""
        self.procs.start("coordinator", ["coordinator", str(self.ws.root), "--web-port",
                                          str(self.web_port)])  # fmt: skip
        self.procs.wait_for("coordinator", f"dashboard and REST API at {self.url}/")
        for node, kit in self.kits.items():
            self.procs.start(node, ["node", "--kit", str(kit)])
        self.tokens["admin"] = self.add_user("ada", Role.DATA_ADMIN)
        with self.client("admin") as c:
            wait_until(lambda: all(n["connected"] for n in c.get("/api/v1/nodes").json()),
                       "both nodes to connect")  # fmt: skip
        return self

    def stop(self) -> None:
        """Stop every process."""
        self.procs.stop()

    def add_user(
        self, user_id: str, role: Role, department: str | None = None,
        entitlements: Sequence[str] = (),
    ) -> str:  # fmt: skip
        """Create a user and return a fresh API token of theirs."""
        return add_user(self.ws, user_id, role, department, entitlements)

    def client(self, who: str | None = None) -> httpx.Client:
        """An HTTP client; with ``who``, authenticated by that user's bearer token."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=WAIT_S)

    def submit(self, spec_yaml: str) -> None:
        """Submit a job as the data admin."""
        with self.client("admin") as c:
            r = c.post("/api/v1/jobs", json={"spec_yaml": spec_yaml})
            assert r.status_code == 201, r.text

    def job(self, job_id: str) -> dict[str, Any]:
        """The job as the data admin sees it."""
        with self.client("admin") as c:
            body: dict[str, Any] = c.get(f"/api/v1/jobs/{job_id}").json()
            return body


def noop_job(name: str, *, rounds: int, sleep_s: float = 0.0, approval: str | None = None) -> str:
    """A no-op model job (slowed by ``sleep_s`` per fit) that may require approval."""
    settings = "params: 100" + (f", sleep_s: {sleep_s}" if sleep_s else "")
    text = (
        f"name: {name}\nmodel: {{name: noop, settings: {{{settings}}}}}\nrounds: {rounds}\n"
        "min_nodes: 1\nround_deadline_s: 30\nmax_retries: 0\n"
    )
    if approval:
        text += f"purpose: {approval}\nrequires_approval: true\n"
    return text
