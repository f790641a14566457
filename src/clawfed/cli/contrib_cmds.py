"""``clawfed contributions JOB``: each department's weight and contribution, from the store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from clawfed.cli.common import console, find_workspace
from clawfed.cli.federation_cmds import WorkspaceOpt
from clawfed.governance.inspect import find_job
from clawfed.governance.jobs import JobStore
from clawfed.governance.rounds import ContributionEntry, ContributionStore, DepartmentContribution


def _num(value: float | None, spec: str = "+.4f") -> str:
    return "—" if value is None else format(value, spec)


def _summary_table(job: str, rows: list[DepartmentContribution]) -> Table:
    table = Table(title=f"Contributions to job {escape(job)}", title_justify="left")
    for name in ("department", "rounds", "measured", "Σ LOO", "Σ Shapley", "mean share"):
        table.add_column(name, justify="left" if name == "department" else "right")
    table.add_column("free rider", justify="right")
    for r in rows:
        flags = "—" if not r.flagged_rounds else f"{r.flagged_rounds} ({r.excluded_rounds} excl.)"
        table.add_row(
            escape(r.department),
            str(r.rounds),
            str(r.measured_rounds),
            _num(r.total_loo) if r.measured_rounds else "—",
            _num(r.total_shapley) if r.measured_rounds else "—",
            f"{r.mean_share:.1%}",
            flags,
        )
    return table


def _rounds_table(entries: list[ContributionEntry]) -> Table:
    table = Table(title="Per round", title_justify="left")
    for name in ("round", "department", "node", "samples", "weight", "share", "action"):
        table.add_column(name, justify="right" if name in ("round", "samples") else "left")
    for name in ("free rider", "LOO", "Shapley"):
        table.add_column(name, justify="right")
    for e in entries:
        table.add_row(
            str(e.round_no),
            escape(e.department),
            escape(e.node_id),
            str(e.num_samples),
            f"{e.weight:.4g}",
            f"{e.share:.1%}",
            e.action,
            e.free_rider or "—",
            _num(e.loo),
            _num(e.shapley),
        )
    return table


def contributions(
    job: Annotated[str, typer.Argument(help="Job id or name.")],
    department: Annotated[
        str | None, typer.Option("--department", "-d", help="Only this department's rows.")
    ] = None,
    rounds: Annotated[
        bool, typer.Option("--rounds/--no-rounds", help="Also list every round.")
    ] = True,
    workspace: WorkspaceOpt = None,
) -> None:
    """Each department's aggregation weight, leave-one-out and Shapley contribution, and flags.

    Shapley values are GTG-Shapley (or exact) estimates on the job's validation set; the
    weights are what each update counted in the aggregate, after the free-rider policy.
    """
    ws = find_workspace(workspace)
    with ws.database() as db:
        record = find_job(JobStore(db), job)
        store = ContributionStore(db)
        summary = store.summary(record.job_id)
        entries = store.entries(record.job_id)
    if department is not None:
        summary = [s for s in summary if s.department == department]
        entries = [e for e in entries if e.department == department]
    if not entries:
        console.print(
            f"job {escape(record.job_id)}: no contribution recorded yet"
            + (f" for department {escape(department)}" if department else ""),
            highlight=False,
        )
        return
    console.print(_summary_table(record.job_id, summary))
    if rounds:
        console.print(_rounds_table(entries))


def register(app: typer.Typer) -> None:
    """Add ``contributions`` to the top-level app."""
    app.command()(contributions)
