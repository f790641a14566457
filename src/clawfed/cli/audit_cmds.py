"""``clawfed audit show|verify``: read and check the audit chain in the workspace's store."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from clawfed.cli.common import console, find_workspace
from clawfed.cli.federation_cmds import WorkspaceOpt
from clawfed.core import ConfigError
from clawfed.governance.audit import AuditLog
from clawfed.governance.audit_chain import ChainHead

app = typer.Typer(help="Read and verify the audit chain.", no_args_is_help=True)

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SPAN = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")
_HASH = re.compile(r"[0-9a-f]{64}")
_MAX_LIMIT = 10_000
_DETAIL_CHARS = 120


def parse_since(text: str, now: datetime) -> datetime:
    """``--since`` as a UTC instant: an ISO date or date-time, or a span back from ``now``.

    Spans are numbers with units s, m, h, d or w, combinable (``2d``, ``3h``, ``1d12h``).
    A date or date-time without an offset is taken as UTC.

    Raises
    ------
    ConfigError
        When ``text`` is neither a span nor an ISO date, or names a time after ``now``.
    """
    value = text.strip()
    if _SPAN.fullmatch(value):
        amounts: dict[str, float] = {}
        for number, unit in _PART.findall(value):
            amounts[_UNITS[unit]] = amounts.get(_UNITS[unit], 0.0) + float(number)
        try:
            return now - timedelta(**amounts)
        except OverflowError:
            raise ConfigError(f"--since {text!r} reaches back too far") from None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--since must be an ISO date or date-time (2026-03-01, 2026-03-01T09:30) or a span "
            f"back from now such as 2d, 3h or 1d12h, got {text!r}"
        ) from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when > now:
        raise ConfigError(f"--since {text!r} lies in the future ({when.isoformat()} UTC)")
    return when


def _detail(detail: object) -> str:
    text = json.dumps(detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"


@app.command()
def show(
    since: Annotated[
        str | None,
        typer.Option(help="Only entries from this time on: ISO date/time (UTC) or 2d, 3h, 1d12h."),
    ] = None,
    department: Annotated[
        str | None, typer.Option(help="Only entries touching this department.")
    ] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. job.submit.")] = None,
    limit: Annotated[
        int, typer.Option(help="Show at most the N newest matching entries.", min=1, max=_MAX_LIMIT)
    ] = 50,
    workspace: WorkspaceOpt = None,
) -> None:
    """List audit entries, oldest first, filtered by time, department and action."""
    start = parse_since(since, datetime.now(UTC)) if since is not None else None
    ws = find_workspace(workspace)
    with ws.database() as db:
        records = AuditLog(db).list(start, department, action, limit=limit, newest_first=True)
    if not records:
        console.print("no audit entries match")
        return
    table = Table(
        "seq", "time (UTC)", "actor", "role", "action", "resource", "departments", "outcome",
        "detail",
    )  # fmt: skip
    for r in reversed(records):
        table.add_row(
            str(r.seq), r.at.strftime("%Y-%m-%d %H:%M:%S"), escape(r.actor), escape(r.role),
            escape(r.action), escape(r.resource), escape(", ".join(r.departments)),
            escape(r.outcome), escape(_detail(r.detail)),
        )  # fmt: skip
    console.print(table)
    if len(records) == limit:
        console.print(f"showing the newest {limit} matching entries; raise --limit to see more")


def _anchor(text: str) -> ChainHead:
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or int(seq) < 1 or not _HASH.fullmatch(digest):
        raise ConfigError(
            f"--anchor must be SEQ:HASH as printed by a previous `clawfed audit verify` "
            f"(e.g. 42:<64 hex digits>), got {text!r}"
        )
    return ChainHead(int(seq), digest)


@app.command()
def verify(
    anchor: Annotated[
        str | None,
        typer.Option(help="SEQ:HASH of a head printed earlier; it must still be in the chain."),
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Recompute the hash chain; exit 1 naming the first broken entry if it was tampered with."""
    saved = _anchor(anchor) if anchor is not None else None
    ws = find_workspace(workspace)
    with ws.database() as db:
        log = AuditLog(db)
        result = log.verify(saved)
        head = log.head() if result.ok else None
    if head is not None:
        console.print(f"chain intact: {result.checked} records")
        if head.seq:
            console.print(
                f"head {head.seq}:{head.hash} (keep it elsewhere; pass it as --anchor later)",
                highlight=False,
            )
        return
    console.print(
        f"[bold red]chain broken[/] at record seq {result.first_bad_seq}: "
        f"{result.problem} — {escape(result.message)} "
        f"({result.checked} records before it are intact)"
    )
    # SystemExit rather than typer.Exit: in non-standalone mode click returns typer.Exit's
    # code instead of exiting, and the process must end with 1 for scripts to see the failure.
    raise SystemExit(1)
