"""The coordinator's HTTP listener: the API and dashboard on its event loop, fed by its events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import uvicorn

from clawfed.api.app import create_app
from clawfed.api.context import ApiContext
from clawfed.api.events import LIVE_KINDS, to_live
from clawfed.coordinator.jobspec import JobSpec
from clawfed.coordinator.round_records import RoundReport
from clawfed.core import ConfigError

if TYPE_CHECKING:
    from clawfed.coordinator.server import Coordinator

log = logging.getLogger("clawfed.api")
_STOP_S = 5.0


class CoordinatorControl:
    """``FederationControl`` over a running ``Coordinator`` (same event loop)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._c = coordinator

    def datasets(self) -> Mapping[str, Mapping[str, str]]:
        """Datasets announced by the nodes connected now."""
        return {s.info.node_id: dict(s.datasets) for s in self._c.hub.sessions()}

    def submit(self, spec: JobSpec, actor: str) -> None:
        """Store and start a job."""
        self._c.jobs.submit(spec, actor=actor)

    async def cancel(self, job_id: str, actor: str) -> None:
        """Cancel a job."""
        await self._c.jobs.cancel(job_id, actor=actor)


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: the coordinator owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WebServer:
    """Serves the REST API and dashboard of ``coordinator`` on ``host:port`` (0: any port)."""

    def __init__(self, coordinator: Coordinator, host: str, port: int) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"web port must be in 0..65535, got {port}")
        self._c = coordinator
        self._host = host
        self._port = port
        self.ctx = ApiContext(
            db=coordinator.db, federation=coordinator.ws.settings.federation,
            artifacts_root=coordinator.ws.artifacts, control=CoordinatorControl(coordinator),
        )  # fmt: skip
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Where the dashboard is (``http://host:port/``)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/"

    def _on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        metrics = self.ctx.metrics
        report = data.get("report")
        if kind == "round_completed" and isinstance(report, RoundReport):
            metrics.round_done(report.job_id, report.duration_s, report.bytes_down,
                               report.bytes_up)  # fmt: skip
        elif kind == "update_rejected":
            metrics.update_rejected(str(data.get("reason", "unknown")))
        elif kind == "node_dropped":
            metrics.node_dropped(str(data.get("reason", "unknown")))
        if kind in LIVE_KINDS and self.ctx.broker.subscribers:
            department_of = {n.node_id: n.department for n in self.ctx.nodes.list()}
            self.ctx.broker.publish(to_live(kind, data, department_of))

    async def start(self) -> str:
        """Bind, start serving in this event loop and return the URL."""
        try:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
        except OSError as exc:
            raise ConfigError(
                f"dashboard cannot listen on {self._host}:{self._port}: {exc}"
            ) from exc
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            create_app(self.ctx), log_level="warning", lifespan="off", access_log=False,
            timeout_graceful_shutdown=2,
        )  # fmt: skip
        self._server = _Server(config)
        self._c.listeners.append(self._on_event)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="clawfed-web")
        for _ in range(200):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.025)
        if self._task.done():
            self._task.result()
        return self.url

    async def stop(self) -> None:
        """Close live views and stop serving (bounded wait)."""
        if self._on_event in self._c.listeners:
            self._c.listeners.remove(self._on_event)
        self.ctx.broker.close()
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), _STOP_S)
        except TimeoutError:
            self._server.force_exit = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
