"""The rules of the audit hash chain: how an entry is hashed and how the chain is verified."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from clawfed.core.errors import StoreError
from clawfed.governance._common import canonical_json, utc
from clawfed.governance.tables import AuditDepartmentRow, AuditHeadRow, AuditRow

#: ``prev_hash`` of the first entry.
GENESIS_HASH = "0" * 64
#: Primary key of the single row of ``audit_head``.
HEAD_ID = 1
_BATCH = 1000


@dataclass(frozen=True)
class ChainHead:
    """The last entry's ``seq`` and ``hash``; keep a copy elsewhere to anchor the chain."""

    seq: int
    hash: str


class VerifyProblem(StrEnum):
    """What verification found wrong at the first broken entry."""

    HASH_MISMATCH = "hash_mismatch"
    BROKEN_LINK = "broken_link"
    MISSING_RECORD = "missing_record"
    UNEXPECTED_RECORD = "unexpected_record"
    HEAD_MISMATCH = "head_mismatch"
    INDEX_MISMATCH = "index_mismatch"
    ANCHOR_MISMATCH = "anchor_mismatch"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain verification; ``first_bad_seq`` names the first broken entry."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: VerifyProblem | None = None
    message: str = "audit chain intact"


def chain_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    resource: str,
    departments: Sequence[str],
    detail: Mapping[str, Any],
    outcome: str,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of the canonical JSON of one entry's content and ``prev_hash``.

    Linking each entry to the hash of the one before is the hash chain of Haber &
    Stornetta, "How to time-stamp a digital document", J. Cryptology 3(2), 1991: an edit,
    deletion, insertion or reordering of stored entries breaks a link.
    """
    payload = {
        "seq": seq,
        "time": utc(at, "audit time").isoformat(timespec="microseconds"),
        "actor": actor,
        "role": role,
        "action": action,
        "resource": resource,
        "departments": departments,
        "detail": detail,
        "outcome": outcome,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(payload, "audit entry").encode("utf-8")).hexdigest()


class _Finding(NamedTuple):
    seq: int
    problem: VerifyProblem
    message: str


def _bad(seq: int, problem: VerifyProblem, why: str) -> _Finding:
    return _Finding(seq, problem, f"audit entry {seq} {why}")


def verify_chain(s: Session, anchor: ChainHead | None = None) -> VerifyResult:
    """Recompute the chain stored in ``s``'s database and report the first broken entry.

    ``anchor``, a head saved earlier outside the database, must still be in the chain
    unchanged; that also catches a rewrite of the chain's tail together with its head.
    """
    checked, prev_seq, prev_hash = 0, 0, GENESIS_HASH
    while True:
        rows, unreadable = _load_batch(s, prev_seq)
        index = _department_index(s, rows)
        for row in rows:
            found = _check_entry(row, prev_seq + 1, prev_hash, index.get(row.seq, set()))
            if found is None and anchor and row.seq == anchor.seq and row.hash != anchor.hash:
                found = _bad(row.seq, VerifyProblem.ANCHOR_MISMATCH, "differs from the anchor")
            if found is not None:
                return _result(s, found, checked)
            checked += 1
            prev_seq, prev_hash = row.seq, row.hash
        if unreadable is not None:
            found = _check_gap(unreadable, prev_seq + 1) or _bad(
                unreadable, VerifyProblem.HASH_MISMATCH, "holds a value that cannot be read"
            )
            return _result(s, found, checked)
        if len(rows) < _BATCH:
            break
    return _result(s, _check_tail(s, prev_seq, prev_hash, anchor), checked)


def _load_batch(s: Session, after: int) -> tuple[list[AuditRow], int | None]:
    """Up to ``_BATCH`` entries after ``after``, and the seq of an unreadable one (if any)."""
    stmt = select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(_BATCH)
    try:
        return list(s.scalars(stmt).all()), None
    except (ValueError, TypeError):
        s.rollback()
    seqs = s.scalars(
        select(AuditRow.seq).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(_BATCH)
    ).all()
    rows: list[AuditRow] = []
    for seq in seqs:
        try:
            rows.append(s.scalars(select(AuditRow).where(AuditRow.seq == seq)).one())
        except (ValueError, TypeError):
            s.rollback()
            return rows, seq
    return rows, None


def _department_index(s: Session, rows: list[AuditRow]) -> dict[int, set[str]]:
    index: dict[int, set[str]] = {}
    if not rows:
        return index
    pairs = s.execute(
        select(AuditDepartmentRow.seq, AuditDepartmentRow.department).where(
            AuditDepartmentRow.seq.between(rows[0].seq, rows[-1].seq)
        )
    )
    for seq, dept in pairs:
        index.setdefault(seq, set()).add(dept)
    return index


def _check_gap(seq: int, want_seq: int) -> _Finding | None:
    if seq > want_seq:
        return _bad(want_seq, VerifyProblem.MISSING_RECORD, f"is missing (next is {seq})")
    if seq < want_seq:
        return _bad(seq, VerifyProblem.UNEXPECTED_RECORD, "has an impossible seq")
    return None


def _check_entry(
    row: AuditRow, want_seq: int, want_prev: str, indexed: set[str]
) -> _Finding | None:
    gap = _check_gap(row.seq, want_seq)
    if gap is not None:
        return gap
    if not isinstance(row.departments, list) or not isinstance(row.detail, dict):
        return _bad(row.seq, VerifyProblem.HASH_MISMATCH, "holds malformed departments or detail")
    try:
        digest = chain_hash(
            seq=row.seq, at=row.at, actor=row.actor, role=row.role, action=row.action,
            resource=row.resource, departments=row.departments, detail=row.detail,
            outcome=row.outcome, prev_hash=row.prev_hash,
        )  # fmt: skip
    except StoreError as exc:
        return _bad(row.seq, VerifyProblem.HASH_MISMATCH, f"cannot be hashed: {exc}")
    if digest != row.hash:
        return _bad(row.seq, VerifyProblem.HASH_MISMATCH, "was altered (its hash differs)")
    if row.prev_hash != want_prev:
        return _bad(row.seq, VerifyProblem.BROKEN_LINK, "does not link to the entry before it")
    if indexed != set(row.departments):
        return _bad(row.seq, VerifyProblem.INDEX_MISMATCH, "disagrees with the department index")
    return None


def _check_tail(
    s: Session, last_seq: int, last_hash: str, anchor: ChainHead | None
) -> _Finding | None:
    head = s.get(AuditHeadRow, HEAD_ID)
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    if last_seq < head_seq:
        return _bad(last_seq + 1, VerifyProblem.MISSING_RECORD, f"is missing (head is {head_seq})")
    if last_seq > head_seq:
        return _bad(head_seq + 1, VerifyProblem.UNEXPECTED_RECORD, "lies beyond the chain head")
    if last_hash != head_hash:
        return _bad(last_seq, VerifyProblem.HEAD_MISMATCH, "differs from the recorded head")
    if anchor is not None and anchor.seq > last_seq:
        return _bad(anchor.seq, VerifyProblem.ANCHOR_MISMATCH, "named by the anchor is missing")
    return None


def _result(s: Session, found: _Finding | None, checked: int) -> VerifyResult:
    orphan = s.scalar(
        select(func.min(AuditDepartmentRow.seq)).where(
            ~exists().where(AuditRow.seq == AuditDepartmentRow.seq)
        )
    )
    if orphan is not None and (found is None or orphan < found.seq):
        found = _bad(orphan, VerifyProblem.INDEX_MISMATCH, "is indexed but not in the log")
    if found is None:
        return VerifyResult(ok=True, checked=checked)
    return VerifyResult(False, checked, found.seq, found.problem, found.message)
