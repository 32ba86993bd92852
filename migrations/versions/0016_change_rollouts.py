"""Change sets applied: each apply's devices (wave, state, snapshot, commits)

Revision ID: 0016_change_rollouts
Revises: 0015_changes
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016_change_rollouts"
down_revision = "0015_changes"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("changes", sa.Column("job_id", sa.Integer(), nullable=True))
    op.add_column(
        "changes",
        sa.Column("reachability", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.alter_column("changes", "reachability", server_default=None)
    op.add_column(
        "changes",
        sa.Column(
            "secret_variables",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )
    op.alter_column("changes", "secret_variables", server_default=None)
    op.add_column("changes", sa.Column("run_id", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_changes_job_id_jobs"), "changes", "jobs", ["job_id"], ["id"], ondelete="SET NULL"
    )
    op.create_foreign_key(
        op.f("fk_changes_run_id_job_runs"),
        "changes",
        "job_runs",
        ["run_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_table(
        "change_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("device_name", sa.String(128), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("commands", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("snapshot_enc", sa.LargeBinary(), nullable=True),
        sa.Column("checkpoint", sa.String(255), nullable=True),
        sa.Column("rollback_method", sa.String(32), nullable=True),
        sa.Column("before_commit", sa.String(64), nullable=True),
        sa.Column("after_commit", sa.String(64), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'pushing', 'applied', 'rolled_back', 'rollback_failed', "
            "'failed_precheck', 'not_attempted')",
            name=op.f("ck_change_devices_state"),
        ),
        sa.ForeignKeyConstraint(
            ["change_id"],
            ["changes.id"],
            name=op.f("fk_change_devices_change_id_changes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["job_runs.id"],
            name=op.f("fk_change_devices_run_id_job_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_change_devices_device_id_devices"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_devices")),
        sa.UniqueConstraint("run_id", "device_id", name=op.f("uq_change_devices_run_device")),
    )
    op.create_index("ix_change_devices_change_id", "change_devices", ["change_id"])


def downgrade():
    op.drop_table("change_devices")
    op.drop_constraint(op.f("fk_changes_run_id_job_runs"), "changes", type_="foreignkey")
    op.drop_constraint(op.f("fk_changes_job_id_jobs"), "changes", type_="foreignkey")
    op.drop_column("changes", "run_id")
    op.drop_column("changes", "job_id")
    op.drop_column("changes", "reachability")
    op.drop_column("changes", "secret_variables")
