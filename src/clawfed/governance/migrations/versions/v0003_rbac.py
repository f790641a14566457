"""People and permissions: users, API tokens, chat identities, entitlements, approvals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.user_id"], name=op.f(f"fk_{table}_user_id_users")
    )


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("department", sa.String(128), nullable=True),
        _ts("created_at"),
        _ts("disabled_at", nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
    )
    op.create_index(op.f("ix_users_department"), "users", ["department"])

    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("revoked_at", nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        _user_fk("api_tokens"),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_api_tokens")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"])

    op.create_table(
        "chat_identities",
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        _ts("linked_at"),
        _user_fk("chat_identities"),
        sa.PrimaryKeyConstraint("channel", "external_id", name=op.f("pk_chat_identities")),
        sa.UniqueConstraint("channel", "user_id", name=op.f("uq_chat_identities_channel_user_id")),
    )
    op.create_index(op.f("ix_chat_identities_user_id"), "chat_identities", ["user_id"])

    op.create_table(
        "entitlements",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(128), nullable=False),
        _ts("granted_at"),
        _user_fk("entitlements"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.job_id"], name=op.f("fk_entitlements_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("user_id", "job_id", name=op.f("pk_entitlements")),
    )
    op.create_index(op.f("ix_entitlements_job_id"), "entitlements", ["job_id"])

    op.create_table(
        "approvals",
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(64), nullable=False),
        _ts("requested_at"),
        sa.Column("decided_by", sa.String(64), nullable=True),
        _ts("decided_at", nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], name=op.f("fk_approvals_job_id_jobs")),
        sa.PrimaryKeyConstraint("job_id", "department", name=op.f("pk_approvals")),
    )
    op.create_index(op.f("ix_approvals_department"), "approvals", ["department"])
    op.create_index(op.f("ix_approvals_status"), "approvals", ["status"])


def downgrade() -> None:
    for table in ("approvals", "entitlements", "chat_identities", "api_tokens", "users"):
        op.drop_table(table)
