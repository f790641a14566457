"""The SQL tables of people and permissions: users, API tokens, chat identities, approvals."""

# A change here needs a new Alembic revision in ``migrations/versions`` (see ``tables.py``).
# Rows never leave the governance package: ``users`` and ``approvals`` turn them into records.

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from clawfed.governance.db import Base


class UserRow(Base):
    """A person who may use clawfed, with one role (and a department where it needs one)."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    department: Mapped[str | None] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class ApiTokenRow(Base):
    """An API token: its public id and the SHA-256 of its secret part, never the secret."""

    __tablename__ = "api_tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(Text)


class ChatIdentityRow(Base):
    """A chat account (e.g. a WeCom userid) that speaks for a user; one per channel and user."""

    __tablename__ = "chat_identities"
    __table_args__ = (UniqueConstraint("channel", "user_id"),)

    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), index=True)
    linked_at: Mapped[datetime]


class EntitlementRow(Base):
    """A user may use the model service of a job (its predictions and results)."""

    __tablename__ = "entitlements"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id"), primary_key=True, index=True)
    granted_at: Mapped[datetime]


class ApprovalRow(Base):
    """Whether a department's head let a job use the department's data, and for what."""

    __tablename__ = "approvals"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id"), primary_key=True)
    department: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    purpose: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
