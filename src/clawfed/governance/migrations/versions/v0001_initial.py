"""Initial schema: nodes, revoked serials, audit chain, jobs, rounds, model versions.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.Column("cert_serial", sa.String(49), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        _ts("enrolled_at"),
        _ts("revoked_at", nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        _ts("last_seen_at", nullable=True),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("cert_serial", name=op.f("uq_nodes_cert_serial")),
    )
    op.create_index(op.f("ix_nodes_department"), "nodes", ["department"])

    op.create_table(
        "revoked_serials",
        sa.Column("cert_serial", sa.String(49), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        _ts("revoked_at"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.node_id"], name=op.f("fk_revoked_serials_node_id_nodes")
        ),
        sa.PrimaryKeyConstraint("cert_serial", name=op.f("pk_revoked_serials")),
    )
    op.create_index(op.f("ix_revoked_serials_node_id"), "revoked_serials", ["node_id"])

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        _ts("at"),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("resource", sa.String(512), nullable=False),
        sa.Column("departments", sa.JSON(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_action"), "audit_log", ["action"])
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])

    op.create_table(
        "audit_departments",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("department", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(
            ["seq"], ["audit_log.seq"], name=op.f("fk_audit_departments_seq_audit_log")
        ),
        sa.PrimaryKeyConstraint("seq", "department", name=op.f("pk_audit_departments")),
    )
    op.create_index(op.f("ix_audit_departments_department"), "audit_departments", ["department"])

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )

    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("spec_yaml", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rounds_total", sa.Integer(), nullable=False),
        sa.Column("rounds_done", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("strategy_state", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("name", name=op.f("uq_jobs_name")),
    )
    op.create_index(op.f("ix_jobs_status"), "jobs", ["status"])

    op.create_table(
        "model_versions",
        sa.Column("version_id", sa.String(128), nullable=False),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=False),
        sa.Column("parent_version_id", sa.String(128), nullable=True),
        sa.Column("round_no", sa.Integer(), nullable=False),
        sa.Column("participants", sa.JSON(), nullable=False),
        sa.Column("strategy_name", sa.String(64), nullable=False),
        sa.Column("strategy_settings", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("department_metrics", sa.JSON(), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.job_id"], name=op.f("fk_model_versions_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["parent_version_id"],
            ["model_versions.version_id"],
            name=op.f("fk_model_versions_parent_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("job_id", "number", name=op.f("uq_model_versions_job_id_number")),
        sa.UniqueConstraint("job_id", "round_no", name=op.f("uq_model_versions_job_id_round_no")),
    )
    op.create_index(op.f("ix_model_versions_job_id"), "model_versions", ["job_id"])

    op.create_table(
        "rounds",
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("round_no", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("participants", sa.JSON(), nullable=False),
        sa.Column("dropped", sa.JSON(), nullable=False),
        sa.Column("rejected", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("version_id", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.job_id"], name=op.f("fk_rounds_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.version_id"],
            name=op.f("fk_rounds_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("job_id", "round_no", "attempt", name=op.f("pk_rounds")),
    )
    op.create_index(op.f("ix_rounds_version_id"), "rounds", ["version_id"])


def downgrade() -> None:
    for table in (
        "rounds",
        "model_versions",
        "jobs",
        "audit_head",
        "audit_departments",
        "audit_log",
        "revoked_serials",
        "nodes",
    ):
        op.drop_table(table)
