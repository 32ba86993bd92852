"""Fenced run lifecycle: attempt start, dependants mark; a final status never changes

Revision ID: 0006_run_fencing
Revises: 0005_notify_triggers
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_run_fencing"
down_revision = "0005_notify_triggers"
branch_labels = None
depends_on = None

ACTIVE = "('PENDING', 'QUEUED', 'SCHEDULED', 'WAITING', 'RUNNING')"


def upgrade():
    op.add_column(
        "job_runs", sa.Column("attempt_started_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "job_runs",
        sa.Column("has_dependants", sa.Boolean(), nullable=False, server_default="false"),
    )
    op.execute(
        "UPDATE job_runs SET has_dependants = true WHERE id IN "
        "(SELECT depends_on_run_id FROM run_dependencies)"
    )
    # Whatever writes a dependency of runs marks the run waited for, in its row: a
    # global run's one-statement ending re-reads its row after a lock wait, never a
    # subquery committed later (see lifecycle.finish_global).
    op.execute(
        """
        CREATE FUNCTION rookery_mark_waited_for() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE job_runs SET has_dependants = true
             WHERE id = NEW.depends_on_run_id AND NOT has_dependants;
            RETURN NEW;
        END $$;
        CREATE TRIGGER run_dependencies_mark AFTER INSERT ON run_dependencies
            FOR EACH ROW EXECUTE FUNCTION rookery_mark_waited_for();
        """
    )
    # The database keeps the engine's two promises even against a bug in it: a run
    # that ended stays ended (exactly once), and an attempt number never goes back
    # (it is the fencing token a stale worker is refused by).
    op.execute(
        f"""
        CREATE FUNCTION rookery_run_fence() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.status NOT IN {ACTIVE} AND NEW.status IS DISTINCT FROM OLD.status THEN
                RAISE EXCEPTION 'run % already ended %; its status cannot become %',
                    OLD.id, OLD.status, NEW.status USING ERRCODE = 'check_violation';
            END IF;
            IF NEW.attempt < OLD.attempt THEN
                RAISE EXCEPTION 'run %: attempt % cannot go back to %',
                    OLD.id, OLD.attempt, NEW.attempt USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER job_runs_fence BEFORE UPDATE OF status, attempt ON job_runs
            FOR EACH ROW EXECUTE FUNCTION rookery_run_fence();
        """
    )


def downgrade():
    op.execute(
        "DROP TRIGGER run_dependencies_mark ON run_dependencies; "
        "DROP FUNCTION rookery_mark_waited_for(); "
        "DROP TRIGGER job_runs_fence ON job_runs; DROP FUNCTION rookery_run_fence()"
    )
    op.drop_column("job_runs", "has_dependants")
    op.drop_column("job_runs", "attempt_started_at")
