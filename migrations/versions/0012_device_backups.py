"""Device backups: each device's latest config backup, kept by a trigger on its results

Revision ID: 0012_device_backups
Revises: 0011_command_rules
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_device_backups"
down_revision = "0011_command_rules"
branch_labels = None
depends_on = None

#: the job types whose results are backups of a device's configuration
BACKUP_JOB_TYPES = "('config_backup')"


def upgrade():
    op.create_table(
        "device_backups",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.String(32), nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_commit", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_backups_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", name=op.f("pk_device_backups")),
    )
    op.create_index("ix_device_backups_last_success_at", "device_backups", ["last_success_at"])
    # Every path that writes a device's result (the runner, a cancel, the reconciler)
    # goes through device_results: the trigger keeps the summary whichever wrote it. A
    # newer result wins; a result without a commit (its config did not change) keeps the
    # commit that holds the config.
    op.execute(
        f"""
        CREATE FUNCTION rookery_note_backup() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.device_id IS NULL OR NEW.finished_at IS NULL THEN
                RETURN NEW;
            END IF;
            IF NOT EXISTS (SELECT 1 FROM job_runs
                            WHERE id = NEW.run_id AND job_type IN {BACKUP_JOB_TYPES}) THEN
                RETURN NEW;
            END IF;
            INSERT INTO device_backups AS b
                   (device_id, last_run_id, last_at, last_status, last_success_at, last_commit)
            VALUES (NEW.device_id, NEW.run_id, NEW.finished_at, NEW.status,
                    CASE WHEN NEW.status = 'success' THEN NEW.finished_at END,
                    NEW.commit_sha)
            ON CONFLICT (device_id) DO UPDATE SET
                   last_run_id = EXCLUDED.last_run_id,
                   last_at = EXCLUDED.last_at,
                   last_status = EXCLUDED.last_status,
                   last_success_at = COALESCE(EXCLUDED.last_success_at, b.last_success_at),
                   last_commit = COALESCE(EXCLUDED.last_commit, b.last_commit)
             WHERE b.last_at <= EXCLUDED.last_at;
            RETURN NEW;
        END $$;
        CREATE TRIGGER device_results_note_backup
            AFTER INSERT OR UPDATE OF status, commit_sha, finished_at ON device_results
            FOR EACH ROW EXECUTE FUNCTION rookery_note_backup();
        """
    )
    op.execute(
        f"""
        INSERT INTO device_backups
               (device_id, last_run_id, last_at, last_status, last_success_at, last_commit)
        SELECT DISTINCT ON (r.device_id) r.device_id, r.run_id, r.finished_at, r.status,
               (SELECT max(s.finished_at) FROM device_results s JOIN job_runs sr ON sr.id = s.run_id
                 WHERE s.device_id = r.device_id AND s.status = 'success'
                   AND sr.job_type IN {BACKUP_JOB_TYPES}),
               (SELECT c.commit_sha FROM device_results c JOIN job_runs cr ON cr.id = c.run_id
                 WHERE c.device_id = r.device_id AND c.commit_sha IS NOT NULL
                   AND cr.job_type IN {BACKUP_JOB_TYPES}
                 ORDER BY c.id DESC LIMIT 1)
          FROM device_results r JOIN job_runs j ON j.id = r.run_id
         WHERE r.device_id IS NOT NULL AND r.finished_at IS NOT NULL
           AND j.job_type IN {BACKUP_JOB_TYPES}
         ORDER BY r.device_id, r.finished_at DESC, r.id DESC
        """
    )


def downgrade():
    op.execute("DROP TRIGGER device_results_note_backup ON device_results")
    op.execute("DROP FUNCTION rookery_note_backup()")
    op.drop_index("ix_device_backups_last_success_at", table_name="device_backups")
    op.drop_table("device_backups")
