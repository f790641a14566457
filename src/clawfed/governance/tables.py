"""The SQL tables of the governance store, as SQLAlchemy 2.0 typed models."""

# Every change here needs a new Alembic revision in ``migrations/versions``; the schema test
# compares ``create_all`` with ``upgrade head``. Rows never leave this package: the stores
# turn them into frozen records.

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from clawfed.governance.db import Base
from clawfed.governance.outbox_tables import ChatOutboxRow as ChatOutboxRow
from clawfed.governance.rbac_tables import UserRow as UserRow  # registers all RBAC tables

#: Decimal digits of the largest X.509 serial (20 octets, RFC 5280 section 4.1.2.2).
SERIAL_DIGITS = 49


class NodeRow(Base):
    """An enrolled node and the certificate it currently holds."""

    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    department: Mapped[str] = mapped_column(String(128), index=True)
    cert_serial: Mapped[str] = mapped_column(String(SERIAL_DIGITS), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    enrolled_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(Text)
    last_seen_at: Mapped[datetime | None]
    connected: Mapped[bool] = mapped_column(Boolean, default=False)


class RevokedSerialRow(Base):
    """A certificate serial that must never be accepted again."""

    __tablename__ = "revoked_serials"

    cert_serial: Mapped[str] = mapped_column(String(SERIAL_DIGITS), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.node_id"), index=True)
    revoked_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)


class AuditRow(Base):
    """One entry of the audit chain; ``hash`` covers the content and ``prev_hash``."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(128), index=True)
    resource: Mapped[str] = mapped_column(String(512))
    departments: Mapped[list[Any]] = mapped_column(JSON)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditDepartmentRow(Base):
    """Index of audit entries by department (for portable filtering)."""

    __tablename__ = "audit_departments"

    seq: Mapped[int] = mapped_column(ForeignKey("audit_log.seq"), primary_key=True)
    department: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class AuditHeadRow(Base):
    """The last entry of the chain (single row, ``id = 1``), so tail deletion is found."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class JobRow(Base):
    """A training job and the strategy state carried across its rounds."""

    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    spec_yaml: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    rounds_total: Mapped[int] = mapped_column(Integer)
    rounds_done: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    strategy_state: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ModelVersionRow(Base):
    """An immutable global model: artifact digest, lineage and metrics."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("job_id", "number"),
        UniqueConstraint("job_id", "round_no"),
    )

    version_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    artifact_path: Mapped[str] = mapped_column(Text)
    parent_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version_id"))
    round_no: Mapped[int] = mapped_column(Integer)
    participants: Mapped[list[Any]] = mapped_column(JSON)
    strategy_name: Mapped[str] = mapped_column(String(64))
    strategy_settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    department_metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class RoundRow(Base):
    """One attempt at one round of a job."""

    __tablename__ = "rounds"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id"), primary_key=True)
    round_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    participants: Mapped[list[Any]] = mapped_column(JSON)
    dropped: Mapped[list[Any]] = mapped_column(JSON)
    rejected: Mapped[list[Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    bytes_down: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_up: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    version_id: Mapped[str | None] = mapped_column(
        ForeignKey("model_versions.version_id"), index=True
    )


class RoundDetailRow(Base):
    """A completed round's aggregation details: weights, free riders, contributions, anomaly."""

    __tablename__ = "round_details"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id"), primary_key=True)
    round_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime]


class ContributionRow(Base):
    """One department's weight and contribution in one round (the contribution ledger)."""

    __tablename__ = "contributions"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id"), primary_key=True)
    round_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    department: Mapped[str] = mapped_column(String(128), index=True)
    num_samples: Mapped[int] = mapped_column(BigInteger)
    weight: Mapped[float] = mapped_column(Float)
    share: Mapped[float] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(16))
    free_rider: Mapped[str | None] = mapped_column(String(32))
    loo: Mapped[float | None] = mapped_column(Float)
    shapley: Mapped[float | None] = mapped_column(Float)
    recorded_at: Mapped[datetime]
