"""``clawfed audit show|verify`` on a real workspace, including tampering done in raw SQL."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_registry_support import invoke, make_workspace, run_main, table_rows
from sqlalchemy.engine import make_url

from clawfed.cli.audit_cmds import parse_since
from clawfed.coordinator.workspace import Workspace
from clawfed.core import ConfigError
from clawfed.governance import AuditLog

#: (age, actor, action, departments) of the entries written, oldest first.
ENTRIES = [
    (timedelta(days=5), "admin", "job.submit", ["信贷部"]),
    (timedelta(hours=30), "admin", "node.enroll", ["风控部"]),
    (timedelta(hours=1), "alice", "job.submit", ["风控部", "信贷部"]),
    (timedelta(minutes=10), "bob", "model.export", []),
]


@dataclass(frozen=True)
class Audited:
    ws: Workspace
    now: datetime


def _write(ws: Workspace) -> datetime:
    now = datetime.now(UTC)
    times: Iterator[datetime] = iter(now - age for age, *_ in ENTRIES)
    with ws.database() as db:
        log = AuditLog(db, clock=lambda: next(times))
        for i, (_, actor, action, depts) in enumerate(ENTRIES, start=1):
            log.append(actor, "data_admin", action, f"job:j{i}", depts, {"i": i}, "ok")
    return now


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Audited:
    ws = make_workspace(tmp_path_factory.mktemp("audit"))
    return Audited(ws, _write(ws))


@pytest.fixture
def fresh(tmp_path: Path) -> Workspace:
    ws = make_workspace(tmp_path)
    _write(ws)
    return ws


def _seqs(ws: Workspace, *args: str) -> list[int]:
    result = invoke(ws, "audit", "show", *args)
    assert result.exit_code == 0, (result.output, result.exception)
    return [int(r[0]) for r in table_rows(result.stdout)]


def _tamper(ws: Workspace, sql: str) -> None:
    """Change the store behind clawfed's back, as someone with file access could."""
    path = make_url(ws.settings.database_url).database
    assert path is not None
    with sqlite3.connect(path) as conn:
        conn.execute(sql)
    conn.close()


def test_show_lists_entries_oldest_first_with_their_fields(audited: Audited) -> None:
    result = invoke(audited.ws, "audit", "show")
    assert result.exit_code == 0
    rows = table_rows(result.stdout)
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    when = (audited.now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert rows[2] == [
        "3", when, "alice", "data_admin", "job.submit", "job:j3", "信贷部, 风控部", "ok", '{"i":3}'
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "seqs"),
    [
        (["--since", "2d"], [2, 3, 4]),
        (["--since", "3h"], [3, 4]),
        (["--since", "1d12h"], [2, 3, 4]),
        (["--department", "信贷部"], [1, 3]),
        (["--action", "job.submit"], [1, 3]),
        (["--department", "风控部", "--action", "job.submit"], [3]),
        (["--since", "2h", "--department", "信贷部"], [3]),
        (["--limit", "2"], [3, 4]),
    ],
)
def test_show_filters(audited: Audited, args: list[str], seqs: list[int]) -> None:
    assert _seqs(audited.ws, *args) == seqs


def test_show_since_an_iso_date_or_time(audited: Audited) -> None:
    day = (audited.now - timedelta(days=3)).date().isoformat()
    assert _seqs(audited.ws, "--since", day) == [2, 3, 4]
    moment = (audited.now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    assert _seqs(audited.ws, "--since", moment) == [3, 4]
    offset = (audited.now - timedelta(hours=2)).astimezone().isoformat()
    assert _seqs(audited.ws, "--since", offset) == [3, 4]


def test_show_tells_when_the_limit_cut_the_list_and_when_nothing_matches(audited: Audited) -> None:
    cut = invoke(audited.ws, "audit", "show", "--limit", "2")
    assert "showing the newest 2 matching entries; raise --limit to see more" in cut.stdout
    none = invoke(audited.ws, "audit", "show", "--action", "no.such.action")
    assert none.exit_code == 0 and none.stdout.strip() == "no audit entries match"


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("yesterday", "--since must be an ISO date or date-time"),
        ("3x", "--since must be an ISO date or date-time"),
        ("2999-01-01", "--since '2999-01-01' lies in the future"),
    ],
)
def test_show_refuses_a_bad_since(audited: Audited, since: str, message: str) -> None:
    result = invoke(audited.ws, "audit", "show", "--since", since)
    assert isinstance(result.exception, ConfigError)
    assert message in str(result.exception)


def test_parse_since_spans_and_dates() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_since("1d12h", now) == datetime(2026, 3, 9, 0, 0, tzinfo=UTC)
    assert parse_since("2w", now) == datetime(2026, 2, 24, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == datetime(2026, 3, 10, 10, 30, tzinfo=UTC)
    assert parse_since("2026-03-01", now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("2026-03-01T08:00+08:00", now) == datetime(2026, 3, 1, tzinfo=UTC)


def test_verify_an_intact_chain(audited: Audited) -> None:
    result = invoke(audited.ws, "audit", "verify")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "chain intact: 4 records"
    anchor = lines[1].split()[1]
    assert anchor.startswith("4:")
    again = invoke(audited.ws, "audit", "verify", "--anchor", anchor)
    assert again.exit_code == 0 and again.stdout.startswith("chain intact: 4 records")


def test_verify_an_empty_chain(tmp_path: Path) -> None:
    result = invoke(make_workspace(tmp_path), "audit", "verify")
    assert result.exit_code == 0
    assert result.stdout.strip() == "chain intact: 0 records"


def test_verify_finds_an_edit(fresh: Workspace) -> None:
    _tamper(fresh, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    result = invoke(fresh, "audit", "verify")
    assert result.exit_code == 1
    assert "chain broken at record seq 2: hash_mismatch" in result.stdout
    assert "(1 records before it are intact)" in result.stdout


def test_verify_finds_a_deletion(fresh: Workspace) -> None:
    _tamper(fresh, "DELETE FROM audit_log WHERE seq = 3")
    result = invoke(fresh, "audit", "verify")
    assert result.exit_code == 1
    assert "chain broken at record seq 3: missing_record" in result.stdout


def test_verify_finds_a_deleted_tail_and_an_anchor_rewrite(fresh: Workspace) -> None:
    head = invoke(fresh, "audit", "verify").stdout.splitlines()[1].split()[1]
    _tamper(fresh, "DELETE FROM audit_log WHERE seq = 4")
    result = invoke(fresh, "audit", "verify")
    assert result.exit_code == 1
    assert "chain broken at record seq 4: missing_record" in result.stdout
    _tamper(
        fresh, "UPDATE audit_head SET seq = 3, hash = (SELECT hash FROM audit_log WHERE seq = 3)"
    )
    assert invoke(fresh, "audit", "verify").exit_code == 0  # a consistent rewrite of the tail …
    anchored = invoke(fresh, "audit", "verify", "--anchor", head)
    assert anchored.exit_code == 1  # … is caught by the anchor kept elsewhere
    assert "chain broken at record seq 4: anchor_mismatch" in anchored.stdout


def test_the_real_entry_point_exits_1_on_a_broken_chain(fresh: Workspace) -> None:
    code, out, _ = run_main("audit", "verify", "-w", str(fresh.root))
    assert code == 0 and out.startswith("chain intact: 4 records")
    _tamper(fresh, "UPDATE audit_log SET detail = '{\"i\": 99}' WHERE seq = 1")
    code, out, _ = run_main("audit", "verify", "-w", str(fresh.root))
    assert code == 1
    assert "chain broken at record seq 1: hash_mismatch" in out


def test_a_malformed_anchor_is_a_clear_error(audited: Audited) -> None:
    code, _, err = run_main("audit", "verify", "--anchor", "4-abc", "-w", str(audited.ws.root))
    assert code == 2
    assert "--anchor must be SEQ:HASH" in err and "'4-abc'" in err
