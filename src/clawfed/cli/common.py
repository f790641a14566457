"""What every CLI command shares: workspace lookup, error display, the admin connection."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from rich.console import Console
from rich.logging import RichHandler

from clawfed.coordinator.config import CONFIG_NAME
from clawfed.coordinator.workspace import Workspace, open_workspace
from clawfed.core import ClawfedError, ConfigError
from clawfed.wire._proto import federation_pb2_grpc as pb_grpc

console = Console()
err_console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    """One log format for every clawfed process."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, rich_tracebacks=False)],
        force=True,
    )
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def find_workspace(given: Path | None) -> Workspace:
    """The workspace named by --workspace, $CLAWFED_WORKSPACE, '.', or './ws', in that order."""
    candidates: list[Path] = []
    if given is not None:
        candidates = [given]
    elif os.environ.get("CLAWFED_WORKSPACE"):
        candidates = [Path(os.environ["CLAWFED_WORKSPACE"])]
    else:
        candidates = [Path("."), Path("ws")]
    for path in candidates:
        if (path / CONFIG_NAME).is_file():
            return open_workspace(path)
    tried = ", ".join(str(p) for p in candidates)
    raise ConfigError(
        f"no clawfed workspace found (looked in {tried}); pass --workspace DIR, set "
        "CLAWFED_WORKSPACE, or create one with `clawfed init DIR`"
    )


@contextmanager
def admin_stub(ws: Workspace, timeout_s: float = 10.0) -> Iterator[pb_grpc.AdminStub]:
    """A connection to the running coordinator with the workspace's admin certificate."""
    admin = ws.admin()
    creds = grpc.ssl_channel_credentials(
        root_certificates=ws.ca().cert_pem,
        private_key=admin.key_pem,
        certificate_chain=admin.cert_pem,
    )
    target = f"127.0.0.1:{ws.settings.port}"
    channel = grpc.secure_channel(target, creds)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError as exc:
        channel.close()
        raise ClawfedError(
            f"the coordinator at {target} is not reachable; start it with "
            f"`clawfed coordinator {ws.root}`"
        ) from exc
    try:
        yield pb_grpc.AdminStub(channel)
    except grpc.RpcError as exc:
        raise ClawfedError(f"the coordinator said: {exc.details()}") from exc
    finally:
        channel.close()
