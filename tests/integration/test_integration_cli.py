"""CLI smoke: init, enroll (kit mode 0600), precise errors with exit code 2 and no traceback.

The commands are real ``python -m clawfed`` processes; the independent ones run at the same
time (one fixture starts them all) to keep the start-up cost of the CLI off the critical path.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from integration_support import WAIT_S, clawfed, free_port, subprocess_env

from clawfed.coordinator.workspace import open_workspace
from clawfed.governance.nodes import NodeRegistry
from clawfed.security.kit import load_kit

pytestmark = pytest.mark.slow  # CLI processes

BAD_JOB = "name: bad job\nmodel: {name: noop}\nrounds: 0\nstrategy: {nmae: fedavg}\n"


@dataclass(frozen=True)
class Ran:
    """A finished CLI command: exit code and output (whitespace-normalised for matching)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def err(self) -> str:
        """stderr on one line (Rich wraps long lines)."""
        return " ".join(self.stderr.split())


@dataclass(frozen=True)
class Session:
    """What the fixture ran, by name, and the paths it used."""

    root: Path
    port: int
    ran: dict[str, Ran]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        clawfed(*args),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> Ran:
    try:
        out, err = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return Ran(proc.returncode, out, err)


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """Run init then enroll, and meanwhile the two failing commands."""
    root = tmp_path_factory.mktemp("cli")
    port = free_port()
    (root / "bad.yaml").write_text(BAD_JOB, encoding="utf-8")
    started = {
        "submit": _start("job", "submit", str(root / "bad.yaml"), "-w", str(root / "nowhere")),
        "node": _start("node", "--kit", str(root / "missing.kit")),
        "init": _start("init", str(root / "ws"), "--federation", "acme", "--port", str(port)),
    }
    try:
        ran = {"init": _finish(started.pop("init"))}
        started["enroll"] = _start(
            "enroll",
            "credit",
            "--department",
            "信贷部",
            "--out",
            str(root / "credit.kit"),
            "-w",
            str(root / "ws"),
        )
        ran.update({name: _finish(proc) for name, proc in started.items()})
    finally:
        for proc in started.values():
            if proc.poll() is None:
                proc.kill()
    yield Session(root, port, ran)


def test_init_creates_the_workspace_with_a_private_ca_key(cli: Session) -> None:
    init = cli.ran["init"]

    assert init.returncode == 0, init.stderr
    assert f"created workspace {cli.root / 'ws'}" in " ".join(init.stdout.split())
    ws = open_workspace(cli.root / "ws")
    assert (ws.settings.federation, ws.settings.port) == ("acme", cli.port)
    assert stat.S_IMODE((ws.pki / "ca.key").stat().st_mode) == 0o600


def test_enroll_writes_a_private_kit_for_the_registered_node(cli: Session) -> None:
    enroll = cli.ran["enroll"]

    assert enroll.returncode == 0, enroll.stderr
    kit_path = cli.root / "credit.kit"
    assert stat.S_IMODE(kit_path.stat().st_mode) == 0o600
    kit = load_kit(kit_path)
    ws = open_workspace(cli.root / "ws")
    assert (kit.node_id, kit.department, kit.coordinator) == ("credit", "信贷部", ws.address)
    db = ws.database()
    try:
        record = NodeRegistry(db).get("credit")
    finally:
        db.close()
    assert record.cert_serial == kit.cert_key.serial and not record.revoked


def test_job_submit_with_an_invalid_file_names_the_problem_and_exits_2(cli: Session) -> None:
    done = cli.ran["submit"]

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert done.err.startswith(f"error: {cli.root / 'bad.yaml'}:"), done.err
    assert "rounds: Input should be greater than or equal to 1" in done.err
    assert "name: must be 1-64 letters" in done.err and "'bad job'" in done.err
    assert "strategy.nmae: unknown field" in done.err


def test_node_with_a_missing_kit_says_so_and_exits_2(cli: Session) -> None:
    done = cli.ran["node"]

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"error: kit file {cli.root / 'missing.kit'} does not exist" in done.err
    assert "clawfed enroll" in done.err
