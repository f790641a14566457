"""``AuditLog``: the append-only record of who did what with whose data, hash-chained."""

from __future__ import annotations

import builtins
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import exists, select, update

from clawfed.core.errors import StoreError
from clawfed.governance._common import (
    JSONValue,
    json_object,
    now_utc,
    require_count,
    require_text,
    utc,
)
from clawfed.governance.audit_chain import (
    GENESIS_HASH,
    HEAD_ID,
    ChainHead,
    VerifyResult,
    chain_hash,
    verify_chain,
)
from clawfed.governance.db import Database
from clawfed.governance.tables import AuditDepartmentRow, AuditHeadRow, AuditRow

_APPEND_ATTEMPTS = 16
#: After the n-th lost race a writer waits a random time up to min(cap, base * 2**n) seconds,
#: so writers that keep colliding spread out instead of racing again in lockstep.
_BACKOFF_BASE_S = 0.002
_BACKOFF_CAP_S = 0.1
_APPEND_LOCK = threading.Lock()


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry, as stored."""

    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    resource: str
    departments: tuple[str, ...]
    detail: Mapping[str, Any]
    outcome: str
    prev_hash: str
    hash: str


class _Conflict(Exception):
    """The append hit a uniqueness rule; if the head moved meanwhile, another writer won."""

    def __init__(self, prev_seq: int) -> None:
        super().__init__(prev_seq)
        self.prev_seq = prev_seq


class AuditLog:
    """Append and query the audit chain, and verify that nobody tampered with it."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = now_utc) -> None:
        self._db = db
        self._clock = clock

    def append(
        self,
        actor: str,
        role: str,
        action: str,
        resource: str,
        departments: Sequence[str],
        detail: Mapping[str, JSONValue],
        outcome: str,
    ) -> AuditRecord:
        """Add one entry at the end of the chain and return it as stored.

        Appends are serialized in the process by a lock and across processes by the
        unique ``seq``; a writer that loses the race retries on the new head.
        """
        require_text(actor, "audit actor", 256)
        require_text(role, "audit role", 64)
        require_text(action, "audit action", 128)
        require_text(resource, "audit resource", 512)
        require_text(outcome, "audit outcome", 64)
        if isinstance(departments, str) or not isinstance(departments, Sequence):
            raise StoreError(f"departments must be a list of names, got {departments!r}")
        depts = tuple(sorted({require_text(d, "department", 128) for d in departments}))
        body = json_object(detail, "audit detail")
        with _APPEND_LOCK:
            for attempt in range(_APPEND_ATTEMPTS):
                try:
                    return self._append_once(
                        str(actor), str(role), str(action), str(resource), depts, body, str(outcome)
                    )
                except _Conflict as exc:
                    if self.head().seq == exc.prev_seq:
                        raise StoreError(
                            f"audit append refused by database {self._db.url}: {exc.__cause__}"
                        ) from exc.__cause__
                time.sleep(random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)))
        raise StoreError(
            f"audit append lost the race {_APPEND_ATTEMPTS} times to other writers; try again"
        )

    def _append_once(
        self,
        actor: str,
        role: str,
        action: str,
        resource: str,
        depts: tuple[str, ...],
        body: dict[str, Any],
        outcome: str,
    ) -> AuditRecord:
        at = utc(self._clock(), "clock time")
        with self._db.session() as s:
            # Lock the head row so writers in other processes queue here instead of losing the
            # insert race again and again (PostgreSQL); SQLite already serializes writers.
            head = s.get(AuditHeadRow, HEAD_ID, with_for_update=True)
            prev_seq, prev_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
            seq = prev_seq + 1
            digest = chain_hash(
                seq=seq, at=at, actor=actor, role=role, action=action, resource=resource,
                departments=depts, detail=body, outcome=outcome, prev_hash=prev_hash,
            )  # fmt: skip
            row = AuditRow(
                seq=seq, at=at, actor=actor, role=role, action=action, resource=resource,
                departments=list(depts), detail=body, outcome=outcome, prev_hash=prev_hash,
                hash=digest,
            )  # fmt: skip
            try:
                s.add(row)
                s.flush()
                s.add_all(AuditDepartmentRow(seq=seq, department=d) for d in depts)
                if head is None:
                    s.add(AuditHeadRow(id=HEAD_ID, seq=seq, hash=digest))
                else:
                    moved = s.execute(
                        update(AuditHeadRow)
                        .where(AuditHeadRow.id == HEAD_ID, AuditHeadRow.seq == prev_seq)
                        .values(seq=seq, hash=digest)
                    )
                    if getattr(moved, "rowcount", 1) != 1:
                        raise _Conflict(prev_seq)
                s.flush()
            except sa_exc.IntegrityError as exc:
                raise _Conflict(prev_seq) from exc
            return _record(row)

    def head(self) -> ChainHead:
        """The current end of the chain (``seq`` 0 and the genesis hash when empty)."""
        with self._db.session() as s:
            head = s.get(AuditHeadRow, HEAD_ID)
            return ChainHead(head.seq, head.hash) if head else ChainHead(0, GENESIS_HASH)

    def list(
        self,
        since: datetime | None = None,
        department: str | None = None,
        action: str | None = None,
        *,
        limit: int = 100,
        newest_first: bool = False,
    ) -> builtins.list[AuditRecord]:
        """Entries at or after ``since`` touching ``department`` with ``action``, by ``seq``."""
        require_count(limit, "limit", minimum=1)
        if limit > 10_000:
            raise StoreError(f"limit must be <= 10000, got {limit}")
        stmt = select(AuditRow)
        if since is not None:
            stmt = stmt.where(AuditRow.at >= utc(since, "since"))
        if action is not None:
            stmt = stmt.where(AuditRow.action == action)
        if department is not None:
            stmt = stmt.where(
                exists().where(
                    AuditDepartmentRow.seq == AuditRow.seq,
                    AuditDepartmentRow.department == department,
                )
            )
        order = AuditRow.seq.desc() if newest_first else AuditRow.seq.asc()
        with self._db.session() as s:
            return [_record(r) for r in s.scalars(stmt.order_by(order).limit(limit))]

    def verify(self, anchor: ChainHead | None = None) -> VerifyResult:
        """Recompute the whole chain and name the first broken entry, if any.

        Parameters
        ----------
        anchor:
            A :meth:`head` saved earlier outside the database; its entry must still be in
            the chain unchanged, which also catches a rewrite of the tail and head together.
        """
        with self._db.session() as s:
            return verify_chain(s, anchor)


def _record(row: AuditRow) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        role=row.role,
        action=row.action,
        resource=row.resource,
        departments=tuple(row.departments),
        detail=dict(row.detail),
        outcome=row.outcome,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
