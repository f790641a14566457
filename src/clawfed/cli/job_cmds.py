"""``clawfed job submit|list|status|cancel``: jobs on the running coordinator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from clawfed.cli.common import admin_stub, console, find_workspace
from clawfed.cli.federation_cmds import WorkspaceOpt
from clawfed.coordinator.jobspec import parse_job
from clawfed.core import ConfigError
from clawfed.wire._proto import federation_pb2 as pb

app = typer.Typer(help="Submit and watch federated training jobs.", no_args_is_help=True)


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="Job file (YAML).")],
    workspace: WorkspaceOpt = None,
    attach: Annotated[bool, typer.Option(help="Follow the job's progress until it ends.")] = False,
) -> None:
    """Submit a job file to the running coordinator."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read job file {file}: {exc}") from exc
    parse_job(text, source=str(file))  # local validation gives the same precise messages
    ws = find_workspace(workspace)
    with admin_stub(ws) as stub:
        info = stub.SubmitJob(pb.SubmitJobRequest(spec_yaml=text))
    console.print(f"job [bold]{info.job_id}[/] submitted: {info.rounds_total} round(s)")
    if attach:
        _follow(ws_path=workspace, job_id=info.job_id)


@app.command("list")
def list_jobs(workspace: WorkspaceOpt = None) -> None:
    """List jobs with their status and progress."""
    ws = find_workspace(workspace)
    with admin_stub(ws) as stub:
        reply = stub.ListJobs(pb.ListJobsRequest())
    table = Table("job", "status", "rounds", "message")
    for j in reply.jobs:
        table.add_row(j.job_id, j.status, f"{j.rounds_done}/{j.rounds_total}", j.message)
    console.print(table)


def _follow(ws_path: Path | None, job_id: str) -> None:
    """Follow a job with a progress bar; the coordinator streams each change (no polling)."""
    ws = find_workspace(ws_path)
    info = pb.JobInfo(job_id=job_id, status="unknown")
    with (
        admin_stub(ws) as stub,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            console=console,
        ) as progress,
    ):
        bar = progress.add_task(job_id, total=None)
        for info in stub.WatchJob(pb.JobRef(job_id=job_id)):
            progress.update(
                bar,
                total=info.rounds_total,
                completed=info.rounds_done,
                description=f"{job_id} ({info.status})",
            )
    console.print(f"job {job_id}: {info.status} {info.message}")


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(help="Job id (its name).")],
    workspace: WorkspaceOpt = None,
    attach: Annotated[bool, typer.Option(help="Follow progress until the job ends.")] = False,
) -> None:
    """Show a job's status; --attach follows it with a progress bar."""
    if attach:
        _follow(workspace, job_id)
        return
    ws = find_workspace(workspace)
    with admin_stub(ws) as stub:
        info = stub.GetJob(pb.JobRef(job_id=job_id))
    console.print(
        f"job [bold]{info.job_id}[/]: {info.status}, round {info.rounds_done}/"
        f"{info.rounds_total} {info.message}"
    )


@app.command()
def cancel(
    job_id: Annotated[str, typer.Argument(help="Job id (its name).")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Cancel a running job."""
    ws = find_workspace(workspace)
    with admin_stub(ws) as stub:
        info = stub.CancelJob(pb.JobRef(job_id=job_id))
    console.print(f"job {info.job_id}: {info.status}")
