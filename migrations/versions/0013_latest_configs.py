"""Latest configs: each device's latest backed-up config, searchable in PostgreSQL

Revision ID: 0013_latest_configs
Revises: 0012_device_backups
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_latest_configs"
down_revision = "0012_device_backups"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "latest_configs",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_latest_configs_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_latest_configs")),
    )
    # A trigram index makes a selective search use an index instead of reading every
    # config. pg_trgm ships with PostgreSQL's contrib modules (Debian's postgresql
    # packages have it); the embedded PostgreSQL wheel does not: there the search reads
    # every row (fine for a lab, see bench/search.py).
    op.execute(
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
                CREATE EXTENSION IF NOT EXISTS pg_trgm;
                CREATE INDEX ix_latest_configs_body_trgm ON latest_configs
                    USING gin (body gin_trgm_ops);
            END IF;
        END $$;
        """
    )


def downgrade():
    op.execute("DROP INDEX IF EXISTS ix_latest_configs_body_trgm")
    op.drop_table("latest_configs")
