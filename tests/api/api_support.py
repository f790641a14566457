"""A real coordinator (with its web listener) and node agents on a background event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from clawfed.coordinator.config import save_settings, settings_from_mapping
from clawfed.coordinator.server import Coordinator
from clawfed.coordinator.workspace import Workspace, enroll_node, init_workspace, open_workspace
from clawfed.governance.db import Database
from clawfed.governance.policy import Role
from clawfed.node.agent import Credentials, NodeAgent
from clawfed.node.dispatch import DispatchRunner
from clawfed.node.learning_runner import LocalData
from clawfed.node.local_policy import LocalPolicy
from clawfed.security.kit import load_kit
from common_support import add_user, free_port, wait_until

WAIT_S = 60.0
T = TypeVar("T")


def make_workspace(root: Path) -> Workspace:
    """A workspace on a free port with fast heartbeats."""
    ws = init_workspace(root, port=free_port())
    data: dict[str, Any] = ws.settings.model_dump(mode="json")
    data.update({"heartbeat_interval_s": 1.0, "heartbeat_misses": 3})
    save_settings(root, settings_from_mapping(data, source="api test settings"))
    return open_workspace(root)


def write_credit_csv(path: Path, rows: int = 120, seed: int = 0) -> Path:
    """A small binary-classification CSV: features ``x1``, ``x2``, label ``y``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    lines = ["x1,x2,y"] + [f"{a:.5f},{b:.5f},{c}" for (a, b), c in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class NodeSpec:
    """A node to run: its id, department, datasets and local policy."""

    node_id: str
    department: str
    datasets: dict[str, Path] = field(default_factory=dict)
    policy: LocalPolicy | None = None


class Federation:
    """A coordinator serving the API on an ephemeral port, and in-process nodes, in a thread."""

    def __init__(self, root: Path, nodes: Sequence[NodeSpec]) -> None:
        self.ws = make_workspace(root / "ws")
        self.kits: dict[str, Path] = {}
        for n in nodes:
            path = root / f"{n.node_id}.kit"
            enroll_node(self.ws, n.node_id, n.department, path)
            self.kits[n.node_id] = path
        self._nodes = list(nodes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.coordinator: Coordinator | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._main, name="clawfed-api-test", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        coordinator = Coordinator(self.ws, web=("127.0.0.1", 0))
        await coordinator.start()
        self.coordinator = coordinator
        assert coordinator.web is not None
        self.url = coordinator.web.url.rstrip("/")
        agents_stop = asyncio.Event()
        tasks = []
        for n in self._nodes:
            k = load_kit(self.kits[n.node_id])
            creds = Credentials(
                k.node_id, k.coordinator, k.ca_cert.encode(), k.cert.encode(), k.key.encode()
            )
            data = {name: LocalData(name, p, None) for name, p in n.datasets.items()}
            runner = DispatchRunner(data, policy=n.policy)
            agent = NodeAgent(creds, runner, datasets=runner.describe())
            tasks.append(asyncio.create_task(agent.run(agents_stop)))
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            agents_stop.set()
            await asyncio.wait(tasks, timeout=WAIT_S)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await coordinator.stop()

    def start(self) -> Federation:
        """Start and wait until the coordinator serves."""
        self._thread.start()
        if not self._ready.wait(WAIT_S):
            raise AssertionError("the coordinator did not start")
        if self._error is not None:
            raise self._error
        return self

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the coordinator's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(WAIT_S)

    def stop(self) -> None:
        """Stop nodes and coordinator and join the thread."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the coordinator thread did not stop"

    def db(self) -> Database:
        """A second connection to the coordinator's store (close it)."""
        return self.ws.database()

    def add_user(
        self, user_id: str, role: Role, department: str | None = None,
        entitlements: Sequence[str] = (),
    ) -> str:  # fmt: skip
        """Create a user and return a fresh API token of theirs."""
        return add_user(self.ws, user_id, role, department, entitlements)

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client of the API, with ``token`` as its bearer token."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=WAIT_S)

    def live(self, count: int) -> None:
        """Wait until ``count`` nodes are connected."""
        wait_until(lambda: self.coordinator is not None and len(self.coordinator.hub.sessions())
                   >= count, f"{count} node(s) to connect")  # fmt: skip


def noop_job(name: str, *, rounds: int = 2, approval: str | None = None, **extra: Any) -> str:
    """A no-op model job file (with ``purpose`` and ``requires_approval`` when ``approval``)."""
    text = (
        f"name: {name}\nmodel: {{name: noop, settings: {{params: 100}}}}\nrounds: {rounds}\n"
        "min_nodes: 1\nround_deadline_s: 20\nmax_retries: 0\n"
    )
    if approval is not None:
        text += f"purpose: {approval}\nrequires_approval: true\n"
    for key, value in extra.items():
        text += f"{key}: {value}\n"
    return text
