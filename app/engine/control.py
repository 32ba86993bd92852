"""Run-control chores the workers do every minute: dead workers' runs, expired waits.

Stalled runs: procrastinate marks a job 'doing' with the id of the worker that took it;
a worker killed with SIGKILL stops heartbeating, and once its last heartbeat is older
than STALLED_SECONDS its runs are retried (or failed after their last attempt), moving
procrastinate's job in the same transaction.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, text

from app.engine import dependencies, runner
from app.extensions import db
from app.models import JobRun, RunStatus, utcnow

logger = logging.getLogger(__name__)

#: a worker heartbeats every 5 s; after 30 s of silence it is dead
STALLED_SECONDS = 30


def recover_stalled_runs(stalled_seconds: int = STALLED_SECONDS) -> list[int]:
    """Retry or fail the runs of workers that stopped heartbeating; returns the run ids."""
    rows = db.session.execute(
        text(
            """
        SELECT job.id AS job_id, (job.args->>'run_id')::int AS run_id, job.worker_id
          FROM procrastinate_jobs job
          LEFT JOIN procrastinate_workers w ON w.id = job.worker_id
         WHERE job.status = 'doing'
           AND job.task_name = 'rookery.execute_run'
           AND (w.id IS NULL
                OR w.last_heartbeat < clock_timestamp() - make_interval(secs => :secs))
         ORDER BY job.id
           FOR UPDATE OF job SKIP LOCKED
        """
        ),
        {"secs": stalled_seconds},
    ).all()
    recovered = []
    for row in rows:
        reason = (
            f"The worker running this run (worker {row.worker_id}) stopped answering "
            f"for more than {stalled_seconds}s"
        )
        decision = runner.fail_stalled(row.run_id, reason)
        if decision == "retry":
            run = db.session.get(JobRun, row.run_id)
            db.session.execute(
                text("SELECT procrastinate_retry_job_v2(:id, :at, NULL, NULL, NULL)"),
                {"id": row.job_id, "at": run.scheduled_at if run else utcnow()},
            )
        else:
            db.session.execute(
                text("SELECT procrastinate_finish_job_v1(:id, 'failed', false)"),
                {"id": row.job_id},
            )
        if decision:
            recovered.append(row.run_id)
            logger.warning("Recovered run %s of a dead worker: %s", row.run_id, decision)
    db.session.commit()
    return recovered


def expire_waiting_runs(limit: timedelta) -> list[int]:
    """Cancel runs that have waited for their dependencies longer than ``limit``."""
    cutoff = utcnow() - limit
    waiting = db.session.scalars(
        select(JobRun)
        .where(JobRun.status == RunStatus.WAITING.value, JobRun.created_at < cutoff)
        .order_by(JobRun.id)
        .with_for_update(skip_locked=True)
    ).all()
    for run in waiting:
        minutes = int(limit.total_seconds() // 60)
        dependencies.cancel_waiting(
            db.session,
            run,
            f"Waited more than {minutes} minutes for its dependencies.",
            actor="scheduler",
        )
    db.session.commit()
    return [run.id for run in waiting]
