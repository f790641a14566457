"""Helpers for the registry and audit CLI tests: a real workspace with jobs, rounds and versions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from click.testing import Result
from typer.testing import CliRunner

from clawfed.cli.main import app
from clawfed.coordinator.workspace import Workspace, init_workspace
from clawfed.core import Weights
from clawfed.governance import (
    ArtifactStore,
    JobStatus,
    JobStore,
    ModelVersion,
    Participant,
    RoundOutcome,
    StrategyInfo,
)
from common_support import free_port

#: When the first round of every test job starts.
T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
#: Wide enough that no table in these tests wraps.
ENV = {"COLUMNS": "250", "NO_COLOR": "1", "CLAWFED_WORKSPACE": None}

NOOP_SPEC = "name: {name}\nmodel: {{name: noop, settings: {{params: 6}}}}\nrounds: {rounds}\n"
LOGREG_SPEC = """\
name: {name}
model: {{name: logistic_regression}}
dataset: fraud
data:
  target: is_fraud
  features: [amount, hour, age, tenure]
rounds: {rounds}
"""


def make_workspace(root: Path) -> Workspace:
    """A fresh coordinator workspace (CA, config, migrated SQLite store) under ``root``."""
    return init_workspace(root / "ws", port=free_port())


@dataclass(frozen=True)
class RoundInput:
    """What one completed round stores: weights, who took part and the metrics."""

    weights: Weights
    participants: Sequence[tuple[str, str, int]]
    metrics: Mapping[str, float] = field(default_factory=dict)
    department_metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def add_job(
    ws: Workspace, name: str, spec_yaml: str, rounds: Sequence[RoundInput]
) -> list[ModelVersion]:
    """Store a running job and complete ``rounds`` through ``JobStore`` (no coordinator)."""
    out: list[ModelVersion] = []
    with ws.database() as db:
        jobs = JobStore(db)
        jobs.create(name, name, spec_yaml, max(len(rounds), 1) + 1)
        jobs.set_status(name, JobStatus.RUNNING)
        store = ArtifactStore(ws.artifacts / name)
        for i, r in enumerate(rounds, start=1):
            artifact = store.save(r.weights, f"round-{i:05d}", {"job": name, "round": str(i)})
            start = T0 + timedelta(minutes=10 * i)
            outcome = RoundOutcome(
                round_no=i,
                started_at=start,
                finished_at=start + timedelta(minutes=1),
                participants=[Participant(n, d, s) for n, d, s in r.participants],
                metrics=r.metrics,
                department_metrics=r.department_metrics,
            )
            done = jobs.complete_round(
                name,
                outcome,
                artifact=artifact,
                strategy=StrategyInfo("fedavg", {"server_lr": 1.0}),
                new_state={},
            )
            out.append(done.version)
    return out


def noop_weights(values: Sequence[float]) -> Weights:
    return Weights({"w": np.asarray(values, dtype=np.float32)})


def invoke(ws: Workspace | Path, *args: str) -> Result:
    """Run ``clawfed ARGS -w WS`` in-process with Typer's runner (wide, uncoloured output)."""
    root = ws.root if isinstance(ws, Workspace) else ws
    return CliRunner(env=ENV).invoke(app, [*args, "-w", str(root)])


def run_main(*args: str) -> tuple[int, str, str]:
    """Run the real entry point ``clawfed.cli.main.main`` (its error handling and exit codes)."""
    import sys

    from clawfed.cli.main import main

    runner = CliRunner(env=ENV)
    with runner.isolation(env=ENV) as (out, err, _):
        saved = sys.argv
        sys.argv = ["clawfed", *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.argv = saved
        return code, out.getvalue().decode(), err.getvalue().decode()


def table_rows(output: str) -> list[list[str]]:
    """The body rows of every rich table in ``output``, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]
