"""Pinned SSH host keys: each device's trusted key, and the last key a refused server offered

Revision ID: 0007_host_keys
Revises: 0006_run_fencing
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_host_keys"
down_revision = "0006_run_fencing"
branch_labels = None
depends_on = None

COLUMNS = (
    ("host_key_type", sa.String(length=64)),
    ("host_key", sa.Text()),
    ("host_key_seen_at", sa.DateTime(timezone=True)),
    ("host_key_source", sa.String(length=16)),
    ("host_key_pending_type", sa.String(length=64)),
    ("host_key_pending", sa.Text()),
    ("host_key_pending_seen_at", sa.DateTime(timezone=True)),
)


def upgrade():
    for name, kind in COLUMNS:
        op.add_column("devices", sa.Column(name, kind, nullable=True))
    op.create_check_constraint(
        op.f("ck_devices_host_key"),
        "devices",
        "(host_key IS NULL) = (host_key_type IS NULL) "
        "AND (host_key IS NULL) = (host_key_source IS NULL) "
        "AND host_key_source IN ('learned', 'accepted', 'set')",
    )
    op.create_check_constraint(
        op.f("ck_devices_host_key_pending"),
        "devices",
        "(host_key_pending IS NULL) = (host_key_pending_type IS NULL)",
    )


def downgrade():
    op.drop_constraint(op.f("ck_devices_host_key_pending"), "devices", type_="check")
    op.drop_constraint(op.f("ck_devices_host_key"), "devices", type_="check")
    for name, _kind in reversed(COLUMNS):
        op.drop_column("devices", name)
