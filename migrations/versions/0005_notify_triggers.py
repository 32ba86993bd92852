"""Announce runs, events and log lines from triggers, in the writer's transaction

Revision ID: 0005_notify_triggers
Revises: 0004_maintenance_state
Create Date: 2026-11-28

A trigger sends the pg_notify (ids only; NOTIFY payloads are capped at 8000 bytes)
in the very transaction that writes the row, whoever writes it, with no extra
round trip from Python. Channels: rookery_run (a run inserted, or its status or
progress changed), rookery_event, rookery_log.
"""

from __future__ import annotations

from alembic import op

revision = "0005_notify_triggers"
down_revision = "0004_maintenance_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION rookery_notify_run() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT'
               OR NEW.status IS DISTINCT FROM OLD.status
               OR NEW.progress_done IS DISTINCT FROM OLD.progress_done
               OR NEW.progress_total IS DISTINCT FROM OLD.progress_total THEN
                PERFORM pg_notify('rookery_run', json_build_object(
                    'run_id', NEW.id, 'status', NEW.status,
                    'done', NEW.progress_done, 'total', NEW.progress_total)::text);
            END IF;
            RETURN NULL;
        END $$;

        CREATE TRIGGER rookery_job_runs_notify AFTER INSERT OR UPDATE ON job_runs
            FOR EACH ROW EXECUTE FUNCTION rookery_notify_run();

        CREATE FUNCTION rookery_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('rookery_event', json_build_object(
                'id', NEW.id, 'run_id', NEW.run_id, 'type', NEW.type)::text);
            RETURN NULL;
        END $$;

        CREATE TRIGGER rookery_events_notify AFTER INSERT ON events
            FOR EACH ROW EXECUTE FUNCTION rookery_notify_event();

        CREATE FUNCTION rookery_notify_log() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('rookery_log', json_build_object(
                'id', NEW.id, 'run_id', NEW.run_id, 'level', NEW.level)::text);
            RETURN NULL;
        END $$;

        CREATE TRIGGER rookery_job_logs_notify AFTER INSERT ON job_logs
            FOR EACH ROW EXECUTE FUNCTION rookery_notify_log();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER IF EXISTS rookery_job_logs_notify ON job_logs;
        DROP TRIGGER IF EXISTS rookery_events_notify ON events;
        DROP TRIGGER IF EXISTS rookery_job_runs_notify ON job_runs;
        DROP FUNCTION IF EXISTS rookery_notify_log();
        DROP FUNCTION IF EXISTS rookery_notify_event();
        DROP FUNCTION IF EXISTS rookery_notify_run();
        """
    )
