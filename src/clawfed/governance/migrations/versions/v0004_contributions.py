"""Aggregation records: per-round details and the per-department contribution ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "round_details",
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("round_no", sa.Integer(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        _ts("recorded_at"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.job_id"], name=op.f("fk_round_details_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("job_id", "round_no", name=op.f("pk_round_details")),
    )
    op.create_table(
        "contributions",
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("round_no", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("num_samples", sa.BigInteger(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("free_rider", sa.String(32), nullable=True),
        sa.Column("loo", sa.Float(), nullable=True),
        sa.Column("shapley", sa.Float(), nullable=True),
        _ts("recorded_at"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.job_id"], name=op.f("fk_contributions_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("job_id", "round_no", "node_id", name=op.f("pk_contributions")),
    )
    op.create_index(op.f("ix_contributions_department"), "contributions", ["department"])


def downgrade() -> None:
    op.drop_index(op.f("ix_contributions_department"), table_name="contributions")
    op.drop_table("contributions")
    op.drop_table("round_details")
