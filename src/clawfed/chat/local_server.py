"""Running an ASGI app with uvicorn on a loopback port in a background thread (fakes, tests)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from clawfed.core.errors import ConfigError

_log = logging.getLogger(__name__)


class RunningServer:
    """A uvicorn server running in a thread; ``url`` is where it listens, ``stop()`` ends it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket):
        self._server = server
        self._thread = thread
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.host: str = host
        self.port: int = port
        self.url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to exit, wait for its thread, and release the socket."""
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)
        self._sock.close()
        if self._thread.is_alive():  # pragma: no cover - only when uvicorn hangs
            raise ConfigError(f"server at {self.url} did not stop within {2 * timeout:g} s")

    @property
    def running(self) -> bool:
        """Whether the server thread is still alive."""
        return self._thread.is_alive()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()


def start_server(
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0
) -> tuple[uvicorn.Server, threading.Thread, socket.socket]:
    """Bind ``host:port`` (0 = any free port) and serve ``app`` from a daemon thread.

    Returns the uvicorn server, its thread and the bound socket, once it accepts requests.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP (not 0) or asyncio skips TCP_NODELAY and replies stall ~40 ms
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {host}:{port}: {exc.strerror}") from exc
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{host}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(startup_timeout)
            sock.close()
            raise ConfigError(f"server on {host}:{port} did not start within {startup_timeout} s")
        time.sleep(0.01)
    _log.debug("serving on %s:%d", *sock.getsockname()[:2])
    return server, thread, sock


def serve_app(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    """Serve an ASGI app on ``host:port`` in the background; stop it with ``.stop()``.

    Parameters
    ----------
    app
        A FastAPI / Starlette application.
    host, port
        Where to listen; port 0 picks a free ephemeral port (see ``RunningServer.url``).
    """
    return RunningServer(*start_server(app, host, port))
