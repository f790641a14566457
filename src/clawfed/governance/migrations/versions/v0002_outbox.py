"""Chat outbox: messages to send through chat channels, persisted across restarts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_outbox")),
    )
    op.create_index(op.f("ix_chat_outbox_channel"), "chat_outbox", ["channel"])
    op.create_index(op.f("ix_chat_outbox_next_attempt_at"), "chat_outbox", ["next_attempt_at"])
    op.create_index(op.f("ix_chat_outbox_status"), "chat_outbox", ["status"])
    op.create_index(op.f("ix_chat_outbox_sent_at"), "chat_outbox", ["sent_at"])


def downgrade() -> None:
    op.drop_table("chat_outbox")
