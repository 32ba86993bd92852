"""Compliance: rules, each device's latest result per rule, and the history of changes

Revision ID: 0014_compliance
Revises: 0013_latest_configs
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014_compliance"
down_revision = "0013_latest_configs"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "compliance_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("platforms", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("tags", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("required", sa.Text(), nullable=False),
        sa.Column("forbidden", sa.Text(), nullable=False),
        sa.Column("module_path", sa.Text(), nullable=True),
        sa.Column("skipped_reason", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.CheckConstraint(
            "severity IN ('low', 'medium', 'high', 'critical')",
            name=op.f("ck_compliance_rules_severity"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_compliance_rules_name")),
    )
    op.create_table(
        "compliance_results",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("compliant", sa.Boolean(), nullable=False),
        sa.Column("missing", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("unexpected", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("remediation", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_compliance_results_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["compliance_rules.id"],
            name=op.f("fk_compliance_results_rule_id_compliance_rules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "rule_id", name=op.f("pk_compliance_results")),
    )
    op.create_index(
        op.f("ix_compliance_results_rule_id"), "compliance_results", ["rule_id"], unique=False
    )
    op.create_table(
        "compliance_changes",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("compliant", sa.Boolean(), nullable=False),
        sa.Column("missing", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("unexpected", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_compliance_changes_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["rule_id"],
            ["compliance_rules.id"],
            name=op.f("fk_compliance_changes_rule_id_compliance_rules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["job_runs.id"],
            name=op.f("fk_compliance_changes_run_id_job_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_changes")),
    )
    op.create_index("ix_compliance_changes_device_id_at", "compliance_changes", ["device_id", "at"])
    op.create_index("ix_compliance_changes_rule_id", "compliance_changes", ["rule_id"])


def downgrade():
    op.drop_table("compliance_changes")
    op.drop_index(op.f("ix_compliance_results_rule_id"), table_name="compliance_results")
    op.drop_table("compliance_results")
    op.drop_table("compliance_rules")
