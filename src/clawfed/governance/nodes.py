"""``NodeRegistry``: enrolled nodes, their certificates, revocations and liveness."""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from clawfed.core.errors import NotFoundError, StoreError
from clawfed.governance._common import now_utc, require_text, utc
from clawfed.governance.db import Database
from clawfed.governance.tables import SERIAL_DIGITS, NodeRow, RevokedSerialRow

#: X.509 serials are positive and at most 20 octets (RFC 5280, section 4.1.2.2).
MAX_SERIAL = 2**159 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class NodeRecord:
    """A node as the store knows it; ``cert_serial`` is the certificate it holds now."""

    node_id: str
    department: str
    cert_serial: int
    fingerprint: str
    enrolled_at: datetime
    revoked_at: datetime | None
    revoke_reason: str | None
    last_seen_at: datetime | None
    connected: bool

    @property
    def revoked(self) -> bool:
        """Whether the node's enrollment was revoked."""
        return self.revoked_at is not None


def check_serial(serial: object) -> int:
    """Return ``serial`` if it is a valid X.509 serial number (1 … 2**159 - 1)."""
    if isinstance(serial, bool) or not isinstance(serial, int):
        raise StoreError(f"certificate serial must be an int, got {serial!r}")
    if not 1 <= serial <= MAX_SERIAL:
        raise StoreError(f"certificate serial must be in 1 … 2**159-1 (RFC 5280), got {serial}")
    return serial


def normalize_fingerprint(fingerprint: object) -> str:
    """Return a SHA-256 fingerprint as 64 lowercase hex digits (colons and case accepted)."""
    if not isinstance(fingerprint, str):
        raise StoreError(f"fingerprint must be a string, got {type(fingerprint).__name__}")
    fp = fingerprint.replace(":", "").strip().lower()
    if not _HEX64.fullmatch(fp):
        raise StoreError(
            f"fingerprint must be a SHA-256 digest of 64 hex digits, got {fingerprint!r}"
        )
    return fp


class NodeRegistry:
    """Enrollment, revocation and liveness of the federation's nodes.

    Revoked certificate serials are kept in their own table, so a serial stays refused even
    after its node re-enrolls with a new certificate.
    """

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = now_utc) -> None:
        self._db = db
        self._clock = clock

    def enroll(
        self,
        node_id: str,
        department: str,
        cert_serial: int,
        fingerprint: str,
        *,
        replace: bool = False,
    ) -> NodeRecord:
        """Record that ``node_id`` of ``department`` holds the certificate ``cert_serial``.

        Enrolling a known node fails unless ``replace`` is true; replacing revokes the
        node's previous certificate (if still valid) and clears an earlier revocation.
        A revoked serial, or one held by another node, is refused.
        """
        require_text(node_id, "node_id", 128)
        require_text(department, "department", 128)
        serial = check_serial(cert_serial)
        fp = normalize_fingerprint(fingerprint)
        now = utc(self._clock(), "clock time")
        with self._db.session() as s:
            if s.get(RevokedSerialRow, str(serial)) is not None:
                raise StoreError(f"certificate serial {serial} was revoked; issue a new one")
            holder = s.scalar(select(NodeRow).where(NodeRow.cert_serial == str(serial)))
            if holder is not None and holder.node_id != node_id:
                raise StoreError(
                    f"certificate serial {serial} is already held by node {holder.node_id!r}"
                )
            row = s.get(NodeRow, node_id)
            if row is None:
                row = NodeRow(node_id=node_id, connected=False)
                s.add(row)
            elif not replace:
                raise StoreError(
                    f"node {node_id!r} is already enrolled (serial {row.cert_serial}); "
                    "pass replace=True to issue it a new certificate"
                )
            elif row.cert_serial != str(serial) and row.revoked_at is None:
                s.add(
                    RevokedSerialRow(
                        cert_serial=row.cert_serial,
                        node_id=node_id,
                        revoked_at=now,
                        reason=f"superseded by serial {serial}",
                    )
                )
            row.department = department
            row.cert_serial = str(serial)
            row.fingerprint = fp
            row.enrolled_at = now
            row.revoked_at = None
            row.revoke_reason = None
            row.connected = False
            s.flush()
            return _record(row)

    def get(self, node_id: str) -> NodeRecord:
        """The node ``node_id``; ``NotFoundError`` if it was never enrolled."""
        with self._db.session() as s:
            return _record(_require(s, node_id))

    def find_by_serial(self, cert_serial: int) -> NodeRecord:
        """The node currently holding ``cert_serial``; ``NotFoundError`` if none does."""
        serial = check_serial(cert_serial)
        with self._db.session() as s:
            row = s.scalar(select(NodeRow).where(NodeRow.cert_serial == str(serial)))
            if row is None:
                raise NotFoundError(f"no enrolled node holds certificate serial {serial}")
            return _record(row)

    def list(self, department: str | None = None) -> builtins.list[NodeRecord]:
        """Every enrolled node (revoked ones included), ordered by ``node_id``."""
        stmt = select(NodeRow).order_by(NodeRow.node_id)
        if department is not None:
            stmt = stmt.where(NodeRow.department == department)
        with self._db.session() as s:
            return [_record(r) for r in s.scalars(stmt)]

    def revoke(self, node_id: str, reason: str) -> NodeRecord:
        """Revoke ``node_id`` and its certificate serial; it is disconnected at once."""
        require_text(reason, "revocation reason", 2000)
        now = utc(self._clock(), "clock time")
        with self._db.session() as s:
            row = _require(s, node_id)
            if row.revoked_at is not None:
                raise StoreError(
                    f"node {node_id!r} was already revoked at {row.revoked_at.isoformat()} "
                    f"({row.revoke_reason})"
                )
            row.revoked_at = now
            row.revoke_reason = reason
            row.connected = False
            s.add(
                RevokedSerialRow(
                    cert_serial=row.cert_serial, node_id=node_id, revoked_at=now, reason=reason
                )
            )
            s.flush()
            return _record(row)

    def is_revoked_serial(self, cert_serial: int) -> bool:
        """Whether the certificate ``cert_serial`` was revoked or superseded."""
        serial = check_serial(cert_serial)
        with self._db.session() as s:
            return s.get(RevokedSerialRow, str(serial)) is not None

    def is_revoked(self, node_id: str) -> bool:
        """Whether ``node_id``'s enrollment is revoked; ``NotFoundError`` if unknown."""
        with self._db.session() as s:
            return _require(s, node_id).revoked_at is not None

    def mark_seen(self, node_id: str, at: datetime) -> None:
        """Record that ``node_id`` was heard from at ``at`` (timezone-aware)."""
        when = utc(at, "mark_seen time")
        with self._db.session() as s:
            row = _require(s, node_id)
            if row.last_seen_at is None or when > row.last_seen_at:
                row.last_seen_at = when

    def set_connected(self, node_id: str, connected: bool) -> None:
        """Record whether ``node_id`` has a live session; a revoked node cannot connect."""
        with self._db.session() as s:
            row = _require(s, node_id)
            if connected and row.revoked_at is not None:
                raise StoreError(f"node {node_id!r} is revoked and cannot be marked connected")
            row.connected = bool(connected)


def _require(s: Session, node_id: str) -> NodeRow:
    row = s.get(NodeRow, node_id)
    if row is None:
        raise NotFoundError(f"node {node_id!r} is not enrolled")
    return row


def _record(row: NodeRow) -> NodeRecord:
    serial = row.cert_serial
    if not serial.isdigit() or len(serial) > SERIAL_DIGITS:
        raise StoreError(f"node {row.node_id!r}: stored certificate serial {serial!r} is corrupt")
    return NodeRecord(
        node_id=row.node_id,
        department=row.department,
        cert_serial=int(serial),
        fingerprint=row.fingerprint,
        enrolled_at=row.enrolled_at,
        revoked_at=row.revoked_at,
        revoke_reason=row.revoke_reason,
        last_seen_at=row.last_seen_at,
        connected=row.connected,
    )
