"""Session version: every session and remember-me cookie of a user ends when it is raised

Revision ID: 0008_session_version
Revises: 0007_host_keys
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_session_version"
down_revision = "0007_host_keys"
branch_labels = None
depends_on = None


def upgrade():
    # Cookies made before this hold a bare user id, which the user loader no longer
    # accepts: upgrading logs everybody out once.
    op.add_column(
        "users",
        sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade():
    op.drop_column("users", "session_version")
