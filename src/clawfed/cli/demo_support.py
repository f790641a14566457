"""What both demos share: a folder they own, free loopback ports, node processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from clawfed.core import ConfigError
from clawfed.node.learning_runner import LocalData

#: The file that marks a folder as made by ``clawfed demo`` (so it may be deleted).
MARKER = ".clawfed-demo"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_folder(folder: Path) -> None:
    """Empty ``folder`` for a demo run; refuse a folder some earlier demo did not make."""
    if folder.exists() or folder.is_symlink():
        if not (folder / MARKER).is_file():
            raise ConfigError(
                f"{folder} exists and was not made by `clawfed demo` (no {MARKER} file in "
                "it); pick another --dir"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by clawfed demo; safe to delete\n", encoding="utf-8")


def start_nodes(
    root: Path, kits: Mapping[str, Path], data: Mapping[str, LocalData]
) -> list[subprocess.Popen[bytes]]:
    """One ``clawfed node`` process per department offering its data; logs in ``root/logs``."""
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    procs = []
    for dept, kit in kits.items():
        local = data[dept]
        cmd = [sys.executable, "-m", "clawfed", "node", "--kit", str(kit),
               "--data", f"{local.name}={local.path}"]  # fmt: skip
        if local.mapping is not None:
            cmd += ["--mapping", f"{local.name}={local.mapping}"]
        with (logs / f"{dept}.log").open("wb") as log:
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    return procs


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process, then kill what has not ended within 15 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
