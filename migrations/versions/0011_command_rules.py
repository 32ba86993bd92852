"""Command rules: admins' allow and deny rules for run_commands

Revision ID: 0011_command_rules
Revises: 0009_credential_hold
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_command_rules"
down_revision = "0009_credential_hold"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "command_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("words", sa.String(200), nullable=False),
        sa.Column("platform", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('allow', 'deny')", name=op.f("ck_command_rules_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_rules")),
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_command_rules ON command_rules "
        "(kind, words, coalesce(platform, ''))"
    )


def downgrade():
    op.drop_index("uq_command_rules", table_name="command_rules")
    op.drop_table("command_rules")
