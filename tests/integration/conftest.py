"""Fixtures of the integration tests: fast workspaces, child processes, and a leak check."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from integration_support import Procs, make_workspace

from clawfed.coordinator.workspace import Workspace


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    """Fail a test that leaves a child process or a clawfed thread behind (and clean up).

    Only what the test started counts: children and threads alive before it are ignored.
    """
    before = {t.ident for t in threading.enumerate()}
    older = {c.pid for c in psutil.Process().children(recursive=True)}
    yield
    children = [c for c in psutil.Process().children(recursive=True) if c.pid not in older]
    for child in children:
        child.kill()
    psutil.wait_procs(children, timeout=10)
    deadline = time.monotonic() + 10
    leftover: list[str] = []
    while time.monotonic() < deadline:
        leftover = [
            t.name
            for t in threading.enumerate()
            if t.ident not in before and t.is_alive() and t.name.startswith("clawfed")
        ]
        if not leftover:
            break
        time.sleep(0.05)
    assert not children, f"child processes left running: {[c.pid for c in children]}"
    assert not leftover, f"threads left running: {leftover}"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Start child processes; every one still running is killed at teardown."""
    group = Procs(tmp_path / "logs")
    yield group
    group.kill_all()


WorkspaceFactory = Callable[..., Workspace]


@pytest.fixture
def workspace_factory(tmp_path: Path) -> WorkspaceFactory:
    """Make a workspace with fast test settings under ``tmp_path`` (keyword overrides)."""
    count = 0

    def make(**overrides: object) -> Workspace:
        nonlocal count
        count += 1
        return make_workspace(tmp_path / f"ws{count}", **overrides)  # type: ignore[arg-type]

    return make


@pytest.fixture
def workspace(workspace_factory: WorkspaceFactory) -> Workspace:
    """One workspace with fast test settings."""
    return workspace_factory()
