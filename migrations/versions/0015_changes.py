"""Change sets: templates of commands for many devices, reviewed before they are applied

Revision ID: 0015_changes
Revises: 0014_compliance
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015_changes"
down_revision = "0014_compliance"
branch_labels = None
depends_on = None


def upgrade():
    jsonb = postgresql.JSONB(astext_type=sa.Text())
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("target_tags", jsonb, nullable=False),
        sa.Column("target_device_ids", jsonb, nullable=False),
        sa.Column("template", sa.Text(), nullable=False),
        sa.Column("variables", jsonb, nullable=False),
        sa.Column("checks", jsonb, nullable=False),
        sa.Column("canary", sa.Integer(), nullable=False),
        sa.Column("wave_size", sa.Integer(), nullable=False),
        sa.Column("pause_seconds", sa.Integer(), nullable=False),
        sa.Column("max_failed", sa.Integer(), nullable=False),
        sa.Column("rollback", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sa.String(100), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "status IN ('draft', 'awaiting_approval', 'approved', 'rejected')",
            name=op.f("ck_changes_status"),
        ),
        sa.CheckConstraint("rollback IN ('device', 'all')", name=op.f("ck_changes_rollback")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        sa.UniqueConstraint("name", name=op.f("uq_changes_name")),
    )


def downgrade():
    op.drop_table("changes")
