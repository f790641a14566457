"""AuditLog: appending, querying and verifying the hash chain."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from governance_support import StepClock, append_many
from sqlalchemy import delete, event, text, update

from clawfed.core.errors import StoreError
from clawfed.governance import (
    GENESIS_HASH,
    AuditLog,
    Database,
    VerifyProblem,
    audit_chain,
    chain_hash,
    sqlite_url,
)
from clawfed.governance.tables import AuditDepartmentRow, AuditHeadRow, AuditRow


@pytest.fixture
def log(db: Database, clock: StepClock) -> AuditLog:
    return AuditLog(db, clock=clock)


def _fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        action = "job.submit" if i % 2 else "node.enroll"
        depts = ["credit", "audit"][: i % 3]
        log.append(f"user{i}", "data_admin", action, f"job:{i}", depts, {"i": i, "t": [i]}, "ok")


def test_append_links_each_entry_to_the_one_before(log: AuditLog) -> None:
    a = log.append("alice", "data_admin", "node.enroll", "node:n1", ["credit"], {"k": 1}, "ok")
    b = log.append("bob", "auditor", "audit.verify", "audit", [], {}, "ok")
    assert (a.seq, b.seq) == (1, 2)
    assert a.prev_hash == GENESIS_HASH and b.prev_hash == a.hash
    assert a.at.tzinfo is not None and b.at > a.at
    assert b.hash == chain_hash(
        seq=2, at=b.at, actor="bob", role="auditor", action="audit.verify", resource="audit",
        departments=[], detail={}, outcome="ok", prev_hash=a.hash,
    )  # fmt: skip
    assert log.head().seq == 2 and log.head().hash == b.hash


def test_append_normalizes_departments_and_detail(log: AuditLog) -> None:
    rec = log.append("a", "r", "x", "y", ["risk", "credit", "risk"], {"t": (1, 2), "n": None}, "ok")
    assert rec.departments == ("credit", "risk")
    assert rec.detail == {"t": [1, 2], "n": None}
    assert log.list() == [rec]


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (("", "r", "a", "res", [], {}, "ok"), "audit actor must not be empty"),
        (("u", "r", "a", "res", "credit", {}, "ok"), "departments must be a list"),
        (("u", "r", "a", "res", [""], {}, "ok"), "department must not be empty"),
        (("u", "r", "a", "res", [], {"x": {1, 2}}, "ok"), "JSON-serializable"),
        (("u", "r", "a", "res", [], {"x": float("nan")}, "ok"), "without NaN"),
        (("u", "r", "a", "res", [], {1: "x"}, "ok"), "keys must be strings"),
        (("u", "r", "a", "res", [], ["not", "a", "dict"], "ok"), "must be a mapping"),
        (("u", "r", "a", "res", [], {}, ""), "audit outcome must not be empty"),
    ],
)
def test_bad_entries_are_refused(log: AuditLog, args: tuple[object, ...], rule: str) -> None:
    with pytest.raises(StoreError, match=rule):
        log.append(*args)  # type: ignore[arg-type]
    assert log.list() == [] and log.head().seq == 0


def test_list_filters_by_time_department_action_and_limit(log: AuditLog) -> None:
    _fill(log, 9)
    every = log.list()
    assert [r.seq for r in every] == list(range(1, 10))
    assert [r.seq for r in log.list(since=every[4].at)] == [5, 6, 7, 8, 9]
    assert [r.seq for r in log.list(department="audit")] == [3, 6, 9]
    assert [r.seq for r in log.list(department="credit", action="job.submit")] == [2, 6, 8]
    assert [r.seq for r in log.list(limit=2, newest_first=True)] == [9, 8]
    assert log.list(department="nobody") == []
    with pytest.raises(StoreError, match="limit must be >= 1"):
        log.list(limit=0)
    with pytest.raises(StoreError, match="timezone-aware"):
        log.list(since=every[0].at.replace(tzinfo=None))


def test_verify_passes_on_an_intact_chain_and_an_empty_one(log: AuditLog) -> None:
    assert log.verify().ok and log.verify().checked == 0
    _fill(log, 7)
    result = log.verify()
    assert result.ok and result.checked == 7 and result.first_bad_seq is None


def test_verify_pages_through_long_chains(
    log: AuditLog, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_chain, "_BATCH", 3)
    _fill(log, 11)
    assert log.verify().checked == 11
    with db.engine.begin() as conn:
        conn.execute(update(AuditRow).where(AuditRow.seq == 8).values(outcome="denied"))
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.problem) == (
        False, 8, VerifyProblem.HASH_MISMATCH,
    )  # fmt: skip
    assert result.checked == 7


def test_editing_detail_with_plain_sqlite_is_found(log: AuditLog, db_path: Path) -> None:
    _fill(log, 5)
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute("UPDATE audit_log SET detail = '{\"i\": 99}' WHERE seq = 3")
        conn.commit()
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 3
    assert "audit entry 3" in result.message


def test_tail_truncation_is_found_by_the_head_and_by_an_anchor(log: AuditLog, db: Database) -> None:
    _fill(log, 5)
    anchor = log.head()
    with db.engine.begin() as conn:
        conn.execute(delete(AuditDepartmentRow).where(AuditDepartmentRow.seq == 5))
        conn.execute(delete(AuditRow).where(AuditRow.seq == 5))
    result = log.verify()
    assert (result.first_bad_seq, result.problem) == (5, VerifyProblem.MISSING_RECORD)
    # A careful forger also rewinds the head: only the anchor kept elsewhere catches that.
    with db.engine.begin() as conn:
        prev = conn.execute(text("SELECT hash FROM audit_log WHERE seq = 4")).scalar_one()
        conn.execute(update(AuditHeadRow).values(seq=4, hash=prev))
    assert log.verify().ok
    result = log.verify(anchor)
    assert (result.first_bad_seq, result.problem) == (5, VerifyProblem.ANCHOR_MISMATCH)


def test_anchor_of_a_rewritten_entry_is_found(log: AuditLog, db: Database) -> None:
    _fill(log, 3)
    anchor = log.head()
    assert log.verify(anchor).ok
    with db.engine.begin() as conn:
        conn.execute(update(AuditRow).where(AuditRow.seq == 3).values(hash="f" * 64))
        conn.execute(update(AuditHeadRow).values(hash="f" * 64))
    result = log.verify(anchor)
    assert not result.ok and result.first_bad_seq == 3


def test_department_index_edits_are_found(log: AuditLog, db: Database) -> None:
    _fill(log, 6)
    with db.engine.begin() as conn:
        conn.execute(AuditDepartmentRow.__table__.insert().values(seq=4, department="hr"))
    result = log.verify()
    assert (result.first_bad_seq, result.problem) == (4, VerifyProblem.INDEX_MISMATCH)
    assert [r.seq for r in log.list(department="hr")] == [4]


def test_unreadable_values_are_reported_not_raised(log: AuditLog, db_path: Path) -> None:
    _fill(log, 4)
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute("UPDATE audit_log SET at = 'yesterday' WHERE seq = 2")
        conn.commit()
    result = log.verify()
    assert (result.ok, result.first_bad_seq, result.problem) == (
        False, 2, VerifyProblem.HASH_MISMATCH,
    )  # fmt: skip


def test_the_clock_must_be_timezone_aware(db: Database, clock: StepClock) -> None:
    log = AuditLog(db, clock=lambda: clock().replace(tzinfo=None))
    with pytest.raises(StoreError, match="timezone-aware"):
        log.append("a", "r", "x", "y", [], {}, "ok")


def test_concurrent_threads_produce_one_unbroken_chain(db: Database, db_path: Path) -> None:
    other = Database(sqlite_url(db_path))
    logs = [AuditLog(db), AuditLog(other)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(10):
                logs[k % 2].append(f"t{k}", "node", "beat", "fed", ["credit"], {"i": i}, "ok")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    other.close()
    assert not errors and not any(t.is_alive() for t in threads)
    result = AuditLog(db).verify()
    assert result.ok and result.checked == 40


def test_concurrent_processes_produce_one_unbroken_chain(db: Database, db_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    url = sqlite_url(db_path)
    procs = [ctx.Process(target=append_many, args=(url, f"p{k}", 15)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():  # pragma: no cover - only on a hang
            p.kill()
            p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    result = AuditLog(db).verify()
    assert result.ok and result.checked == 30
    assert {r.actor for r in AuditLog(db).list()} == {"p0", "p1"}


def test_a_new_database_object_sees_the_chain(db_path: Path, clock: StepClock) -> None:
    with Database(sqlite_url(db_path)) as first:
        first.create_all()
        _fill(AuditLog(first, clock=clock), 4)
        before = AuditLog(first).list()
    with Database(sqlite_url(db_path)) as second:
        log = AuditLog(second, clock=clock)
        assert log.list() == before
        nxt = log.append("z", "r", "x", "y", [], {}, "ok")
        assert nxt.seq == 5 and nxt.prev_hash == before[-1].hash
        assert log.verify().ok
        assert before[0].at + timedelta(seconds=1) == before[1].at


def test_losing_a_race_to_another_writer_retries_on_the_new_head(
    db: Database, db_path: Path
) -> None:
    """Another process appends between our read of the head and our insert."""
    other = Database(sqlite_url(db_path))
    rival = AuditLog(other)
    raced: list[int] = []

    def interfere(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO audit_log") and not raced:
            raced.append(rival._append_once("rival", "node", "beat", "fed", (), {}, "ok").seq)

    event.listen(db.engine, "before_cursor_execute", interfere)
    try:
        mine = AuditLog(db).append("me", "data_admin", "job.submit", "job:1", [], {}, "ok")
    finally:
        event.remove(db.engine, "before_cursor_execute", interfere)
        other.close()
    assert raced == [1]
    assert mine.seq == 2 and mine.prev_hash == AuditLog(db).list()[0].hash
    assert AuditLog(db).verify().ok
