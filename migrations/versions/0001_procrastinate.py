"""procrastinate's schema, vendored at 3.10.0

Revision ID: 0001_procrastinate
Revises:
Create Date: 2026-11-28

The SQL is procrastinate's own ``schema.sql`` of the pinned version, copied beside
this folder. It contains ``%`` and ``:=``, so it runs on the raw psycopg connection
(no SQLAlchemy parameter parsing). A later procrastinate upgrade adds a revision
that runs procrastinate's migration files for the versions in between.
"""

from __future__ import annotations

from pathlib import Path

from alembic import op

revision = "0001_procrastinate"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "procrastinate_schema_3.10.0.sql"


def upgrade() -> None:
    raw = op.get_bind().connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute(SCHEMA_FILE.read_text())


def downgrade() -> None:
    raw = op.get_bind().connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute(
            "SELECT format('%s(%s)', p.oid::regproc, pg_get_function_identity_arguments(p.oid))"
            " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'"
        )
        functions = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,"
            " procrastinate_jobs, procrastinate_workers CASCADE"
        )
        for signature in functions:
            cursor.execute(f"DROP FUNCTION IF EXISTS {signature} CASCADE")
        cursor.execute(
            "DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_event_type,"
            " procrastinate_job_status CASCADE"
        )
