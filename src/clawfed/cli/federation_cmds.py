"""``clawfed init``, ``enroll``, ``revoke`` and ``nodes``: setting up who belongs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from clawfed.cli.common import admin_stub, console, find_workspace
from clawfed.coordinator.config import DEFAULT_PORT
from clawfed.coordinator.workspace import enroll_node, init_workspace
from clawfed.core import ClawfedError
from clawfed.governance.nodes import NodeRegistry
from clawfed.wire._proto import federation_pb2 as pb

WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", "-w", help="Coordinator workspace folder.")
]


def init(
    workspace: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")],
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            help="Extra host name or IP for the server "
            "certificate; the first is the address given to nodes.",
        ),
    ] = None,
    federation: Annotated[str, typer.Option(help="Name of the federation.")] = "clawfed",
    port: Annotated[int, typer.Option(help="Federation port.")] = DEFAULT_PORT,
    database_url: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the store (default: SQLite file).")
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow", help="CIDR allowed to connect (repeatable; default loopback only)."
        ),
    ] = None,
) -> None:
    """Create a federation: its CA, the coordinator's certificate, config and SQL store."""
    ws = init_workspace(
        workspace,
        federation=federation,
        hosts=tuple(host or ()),
        port=port,
        database_url=database_url,
        allowlist=tuple(allow) if allow else None,
    )
    console.print(f"created workspace [bold]{ws.root}[/] for federation {federation!r}")
    console.print(f"  CA and certificates in {ws.pki}, store at {ws.settings.database_url}")
    console.print(f"  next: clawfed enroll NODE --department NAME --out NODE.kit -w {ws.root}")


def enroll(
    node_id: Annotated[str, typer.Argument(help="Node id, e.g. credit.")],
    department: Annotated[str, typer.Option(help="Department name, e.g. 信贷部.")],
    out: Annotated[Path, typer.Option(help="Where to write the enrollment kit.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Enroll a department's node and write the kit file to hand to it."""
    ws = find_workspace(workspace)
    kit = enroll_node(ws, node_id, department, out)
    console.print(f"enrolled node [bold]{kit.node_id}[/] ({kit.department}); kit written to {out}")
    console.print("  hand this file to the department over a trusted channel: it holds a key")


def revoke(
    node_id: Annotated[str, typer.Argument(help="Node to revoke.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "revoked by admin",
    workspace: WorkspaceOpt = None,
) -> None:
    """Revoke a node: refused from its next connection on, live session dropped now."""
    ws = find_workspace(workspace)
    db = ws.database()
    try:
        NodeRegistry(db).revoke(node_id, reason)
    finally:
        db.close()
    console.print(f"node [bold]{node_id}[/] revoked; it will be refused from now on")
    try:
        with admin_stub(ws, timeout_s=3.0) as stub:
            reply = stub.Revoke(pb.RevokeRequest(node_id=node_id, reason=reason))
    except ClawfedError as exc:
        console.print(f"  (running coordinator not told: {exc})")
        return
    if reply.was_connected:
        console.print("  its live session was dropped")


def nodes(workspace: WorkspaceOpt = None) -> None:
    """List enrolled nodes with their department and liveness."""
    ws = find_workspace(workspace)
    db = ws.database()
    try:
        records = NodeRegistry(db).list()
    finally:
        db.close()
    table = Table("node", "department", "connected", "revoked", "last seen")
    for r in records:
        table.add_row(
            r.node_id,
            r.department,
            "yes" if r.connected else "no",
            "yes" if r.revoked else "",
            str(r.last_seen_at or ""),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add these commands to the top-level app."""
    app.command()(init)
    app.command()(enroll)
    app.command()(revoke)
    app.command()(nodes)
