"""Property tests: any single edit, deletion, insertion or swap made in the database is found."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from governance_support import StepClock
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, create_engine, delete, insert, select, update

from clawfed.governance import (
    GENESIS_HASH,
    AuditLog,
    AuditRecord,
    Database,
    VerifyProblem,
    chain_hash,
    sqlite_url,
)
from clawfed.governance.tables import AuditDepartmentRow, AuditHeadRow, AuditRow

N = 6
TEXT_FIELDS = ("actor", "role", "action", "resource", "outcome", "prev_hash", "hash")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

safe_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
json_leaf = st.none() | st.booleans() | st.integers(-1000, 1000) | safe_text
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(safe_text, inner, max_size=3),
    max_leaves=6,
)
seqs = st.integers(1, N)


@dataclass(frozen=True)
class Chain:
    path: Path
    records: tuple[AuditRecord, ...]
    work: Path


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """A chain of ``N`` entries written through ``AuditLog``, in a closed SQLite file."""
    path = tmp_path_factory.mktemp("chain") / "base.db"
    with Database(sqlite_url(path)) as db:
        db.create_all()
        log = AuditLog(db, clock=StepClock())
        depts = [["credit"], [], ["audit", "credit"], ["risk"], ["credit"], ["audit"]]
        for i in range(N):
            log.append(f"user{i}", "data_admin", f"act{i % 2}", f"res:{i}", depts[i],
                       {"i": i, "nested": {"k": [i, "v"]}}, "ok")  # fmt: skip
        records = tuple(log.list())
    assert not path.with_name("base.db-wal").exists()
    return Chain(path, records, tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="module")
def copies(chain: Chain) -> Iterator[Any]:
    """Return a function making a fresh copy of the base chain for one example."""
    made: list[Path] = []

    def make() -> Path:
        target = chain.work / f"{uuid.uuid4().hex}.db"
        shutil.copyfile(chain.path, target)
        made.append(target)
        return target

    yield make
    for p in made:
        p.unlink(missing_ok=True)


def _tamper_and_verify(path: Path, change: Any) -> Any:
    """Apply ``change(conn)`` with a plain engine (no foreign keys), then verify the chain."""
    raw = create_engine(sqlite_url(path))
    try:
        with raw.begin() as conn:
            change(conn)
    finally:
        raw.dispose()
    with Database(sqlite_url(path)) as db:
        result = AuditLog(db).verify()
    path.unlink()
    return result


def _row_values(conn: Connection, seq: int) -> dict[str, Any]:
    row = conn.execute(select(AuditRow.__table__).where(AuditRow.seq == seq)).mappings().one()
    return dict(row)


@SETTINGS
@given(seq=seqs, field=st.sampled_from(TEXT_FIELDS), value=safe_text)
def test_any_text_edit_is_found(
    chain: Chain, copies: Any, seq: int, field: str, value: str
) -> None:
    assume(getattr(chain.records[seq - 1], field) != value)
    result = _tamper_and_verify(
        copies(),
        lambda c: c.execute(update(AuditRow).where(AuditRow.seq == seq).values({field: value})),
    )
    assert not result.ok and result.first_bad_seq == seq


@SETTINGS
@given(seq=seqs, detail=st.dictionaries(safe_text, json_value, max_size=4))
def test_any_detail_edit_is_found(
    chain: Chain, copies: Any, seq: int, detail: dict[str, Any]
) -> None:
    assume(chain.records[seq - 1].detail != detail)
    result = _tamper_and_verify(
        copies(),
        lambda c: c.execute(update(AuditRow).where(AuditRow.seq == seq).values(detail=detail)),
    )
    assert not result.ok and result.first_bad_seq == seq


@SETTINGS
@given(seq=seqs, depts=st.lists(safe_text, max_size=3))
def test_any_departments_edit_is_found(
    chain: Chain, copies: Any, seq: int, depts: list[str]
) -> None:
    assume(list(chain.records[seq - 1].departments) != depts)
    result = _tamper_and_verify(
        copies(),
        lambda c: c.execute(update(AuditRow).where(AuditRow.seq == seq).values(departments=depts)),
    )
    assert not result.ok and result.first_bad_seq == seq


@SETTINGS
@given(seq=seqs, shift_us=st.integers(-(10**12), 10**12).filter(lambda v: v != 0))
def test_any_time_edit_is_found(chain: Chain, copies: Any, seq: int, shift_us: int) -> None:
    at = chain.records[seq - 1].at + timedelta(microseconds=shift_us)
    result = _tamper_and_verify(
        copies(), lambda c: c.execute(update(AuditRow).where(AuditRow.seq == seq).values(at=at))
    )
    assert not result.ok and result.first_bad_seq == seq


@SETTINGS
@given(seq=seqs)
def test_any_deletion_is_found(copies: Any, seq: int) -> None:
    def change(c: Connection) -> None:
        c.execute(delete(AuditDepartmentRow).where(AuditDepartmentRow.seq == seq))
        c.execute(delete(AuditRow).where(AuditRow.seq == seq))

    result = _tamper_and_verify(copies(), change)
    assert (result.ok, result.first_bad_seq, result.problem) == (
        False, seq, VerifyProblem.MISSING_RECORD,
    )  # fmt: skip


@SETTINGS
@given(pos=st.integers(1, N + 1), forged=st.booleans(), actor=safe_text)
def test_any_insertion_is_found(
    chain: Chain, copies: Any, pos: int, forged: bool, actor: str
) -> None:
    """Insert an entry at ``pos`` (renumbering the rest); ``forged`` gives it valid hashes."""
    prev_hash = chain.records[pos - 2].hash if pos > 1 else GENESIS_HASH
    at = chain.records[pos - 2].at if pos > 1 else chain.records[0].at
    content: dict[str, Any] = {
        "seq": pos, "at": at, "actor": actor, "role": "data_admin", "action": "job.submit",
        "resource": "job:x", "departments": ["credit"], "detail": {"forged": True},
        "outcome": "ok",
    }  # fmt: skip
    digest = chain_hash(**content, prev_hash=prev_hash) if forged else "e" * 64

    def change(c: Connection) -> None:
        for seq in range(N, pos - 1, -1):
            c.execute(update(AuditDepartmentRow).where(AuditDepartmentRow.seq == seq)
                      .values(seq=seq + 1))  # fmt: skip
            c.execute(update(AuditRow).where(AuditRow.seq == seq).values(seq=seq + 1))
        c.execute(insert(AuditRow).values(**content, prev_hash=prev_hash, hash=digest))
        c.execute(insert(AuditDepartmentRow).values(seq=pos, department="credit"))

    result = _tamper_and_verify(copies(), change)
    expected = pos + 1 if forged and pos <= N else pos
    assert not result.ok and result.first_bad_seq == expected


@SETTINGS
@given(pair=st.lists(seqs, min_size=2, max_size=2, unique=True).map(sorted))
def test_any_swap_is_found(copies: Any, pair: list[int]) -> None:
    i, j = pair

    def change(c: Connection) -> None:
        a, b = _row_values(c, i), _row_values(c, j)
        for seq, values in ((i, b), (j, a)):
            values = {k: v for k, v in values.items() if k != "seq"}
            c.execute(update(AuditRow).where(AuditRow.seq == seq).values(**values))
        for seq, depts in ((i, b["departments"]), (j, a["departments"])):
            c.execute(delete(AuditDepartmentRow).where(AuditDepartmentRow.seq == seq))
            for d in depts:
                c.execute(insert(AuditDepartmentRow).values(seq=seq, department=d))

    result = _tamper_and_verify(copies(), change)
    assert not result.ok and result.first_bad_seq == i


@SETTINGS
@given(seq=seqs, extra=safe_text)
def test_any_department_index_edit_is_found(
    chain: Chain, copies: Any, seq: int, extra: str
) -> None:
    current = chain.records[seq - 1].departments

    def change(c: Connection) -> None:
        if current and extra in current:
            c.execute(delete(AuditDepartmentRow).where(
                AuditDepartmentRow.seq == seq, AuditDepartmentRow.department == extra))  # fmt: skip
        else:
            c.execute(insert(AuditDepartmentRow).values(seq=seq, department=extra))

    result = _tamper_and_verify(copies(), change)
    assert (result.ok, result.first_bad_seq, result.problem) == (
        False, seq, VerifyProblem.INDEX_MISMATCH,
    )  # fmt: skip


@SETTINGS
@given(seq=st.integers(0, N + 2), digest=st.sampled_from(["0" * 64, "a" * 64]))
def test_any_head_edit_is_found(chain: Chain, copies: Any, seq: int, digest: str) -> None:
    assume((seq, digest) != (N, chain.records[-1].hash))
    result = _tamper_and_verify(
        copies(), lambda c: c.execute(update(AuditHeadRow).values(seq=seq, hash=digest))
    )
    assert not result.ok
    assert result.first_bad_seq == (min(seq, N) + 1 if seq != N else N)


def test_untouched_copy_verifies(copies: Any) -> None:
    result = _tamper_and_verify(copies(), lambda _: None)
    assert result.ok and result.checked == N
