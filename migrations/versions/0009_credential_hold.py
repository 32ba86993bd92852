"""Credential hold: a device's credentials wait for an admin after a widening change

Revision ID: 0009_credential_hold
Revises: 0008_session_version
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_credential_hold"
down_revision = "0008_session_version"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("devices", sa.Column("credential_hold", sa.Text(), nullable=True))
    op.add_column(
        "devices", sa.Column("credential_hold_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("devices", sa.Column("credential_hold_by", sa.String(100), nullable=True))


def downgrade():
    op.drop_column("devices", "credential_hold_by")
    op.drop_column("devices", "credential_hold_at")
    op.drop_column("devices", "credential_hold")
