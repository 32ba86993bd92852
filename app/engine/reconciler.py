"""The reconciler: every non-final run agrees with its queue job and its worker.

A run and its queue job can diverge when a worker dies (SIGKILL, OOM, a lost host),
when PostgreSQL restarts under a worker, or when a cancel lands at a bad moment.
Every few seconds, on the housekeeping queue, ``reconcile`` compares them and repairs
each divergence through the state machine (lifecycle.py):

- a RUNNING run whose attempt is dead (its queue job finished, failed, was aborted or
  is gone; or the worker holding it stopped heartbeating): CANCELLED when a cancel was
  requested, else a new attempt when attempts remain, else FAILED_UNEXPECTED with the
  reason;
- a RUNNING run far past its timeout (a wedged worker, a ``run_now`` whose process
  died): TIMEOUT;
- a QUEUED or SCHEDULED run whose queue job is gone, ended or held by a dead worker:
  CANCELLED when a cancel was requested, else a new queue job;
- a WAITING run whose dependencies have all ended: released or cancelled; one that
  waited longer than ROOKERY_DEPENDENCY_MAX_WAIT_MINUTES: cancelled;
- a queue job of another task left 'doing' by a dead worker: retried.

A worker in its grace period keeps heartbeating (worker.py), so it never looks dead.
Every repair is logged and counted (maintenance_state "reconciler", shown in
/metrics as rookery_reconciler_repairs_total).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text

from app.engine import dependencies, lifecycle
from app.engine.queue import CANCEL_JOB_SQL
from app.extensions import db
from app.models import JobRun, RunStatus, utcnow

logger = logging.getLogger(__name__)

#: a RUNNING run this long past its own timeout is ended TIMEOUT by the reconciler
#: (the worker's supervisor ends it at the timeout; this is for a worker that cannot)
TIMEOUT_MARGIN_SECONDS = 300

STATE_KEY = "reconciler"

_DEAD_WORKER = """(w.id IS NULL
    OR w.last_heartbeat < clock_timestamp() - make_interval(secs => :stalled))"""

#: RUNNING runs whose attempt is dead: the queue job is not 'doing', or its worker is
_DEAD_ATTEMPTS = text(
    f"""
    SELECT r.id, j.id AS queue_job_id, j.status AS queue_status, j.worker_id
      FROM job_runs r
      LEFT JOIN procrastinate_jobs j ON j.id = r.procrastinate_job_id
      LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
     WHERE r.status = 'RUNNING' AND r.procrastinate_job_id IS NOT NULL
       AND (j.id IS NULL OR j.status <> 'doing' OR {_DEAD_WORKER})
     ORDER BY r.id
       FOR NO KEY UPDATE OF r SKIP LOCKED
    """
)

#: RUNNING runs far past their timeout (also run_now runs, which have no queue job)
_OVERDUE = text(
    """
    SELECT r.id FROM job_runs r
     WHERE r.status = 'RUNNING'
       AND coalesce(r.attempt_started_at, r.started_at, r.created_at)
           < clock_timestamp() - make_interval(
               secs => coalesce(r.timeout_seconds, :longest) + :margin)
     ORDER BY r.id
       FOR NO KEY UPDATE OF r SKIP LOCKED
    """
)

#: QUEUED/SCHEDULED runs whose queue job cannot start them
_LOST_QUEUE_JOBS = text(
    f"""
    SELECT r.id, j.status AS queue_status
      FROM job_runs r
      LEFT JOIN procrastinate_jobs j ON j.id = r.procrastinate_job_id
      LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
     WHERE r.status IN ('QUEUED', 'SCHEDULED') AND r.triggered_by <> 'run_now'
       AND (j.id IS NULL OR j.status NOT IN ('todo', 'doing')
            OR (j.status = 'doing' AND {_DEAD_WORKER}))
     ORDER BY r.id
       FOR NO KEY UPDATE OF r SKIP LOCKED
    """
)

#: queue jobs left 'doing' by dead workers (runs' jobs whose run moved on, other tasks)
_ORPHAN_DOING = text(
    f"""
    SELECT j.id, j.task_name FROM procrastinate_jobs j
      LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
     WHERE j.status = 'doing' AND {_DEAD_WORKER}
       AND NOT EXISTS (SELECT 1 FROM job_runs r
                        WHERE r.procrastinate_job_id = j.id
                          AND r.status IN ('RUNNING', 'QUEUED', 'SCHEDULED'))
     ORDER BY j.id
       FOR UPDATE OF j SKIP LOCKED
    """
)

_FINISH_QUEUE_JOB = text("SELECT procrastinate_finish_job_v1(:id, 'failed', false)")
_RETRY_QUEUE_JOB = text("SELECT procrastinate_retry_job_v2(:id, now(), NULL, NULL, NULL)")


def reconcile(
    *,
    stalled_seconds: int,
    max_wait: timedelta | None = None,
    longest_timeout: int = 86400,
) -> Counter[str]:
    """One pass over every non-final run; returns the repairs made, by kind.

    ``longest_timeout`` stands for the timeout of a run that has none of its own.
    """
    repairs: Counter[str] = Counter()
    _repair_dead_attempts(stalled_seconds, repairs)
    _repair_overdue(longest_timeout, repairs)
    _repair_lost_queue_jobs(stalled_seconds, repairs)
    _release_waiting(repairs)
    if max_wait is not None:
        _expire_waiting(max_wait, repairs)
    _repair_orphan_queue_jobs(stalled_seconds, repairs)
    _record(repairs)
    return repairs


def _repair_dead_attempts(stalled_seconds: int, repairs: Counter[str]) -> None:
    rows = db.session.execute(_DEAD_ATTEMPTS, {"stalled": stalled_seconds}).all()
    for row in rows:
        run = lifecycle.lock(row.id)
        assert run is not None
        if row.queue_job_id is None:
            why = "its queue entry is gone"
        elif row.queue_status == "doing":
            why = f"its worker (worker {row.worker_id}) stopped answering for {stalled_seconds}s"
            db.session.execute(_FINISH_QUEUE_JOB, {"id": row.queue_job_id})
        else:
            why = f"its queue entry ended {row.queue_status} while the run was RUNNING"
        reason = f"Attempt {run.attempt} was lost: {why}"
        outcome = lifecycle.retry_or_fail(
            db.session,
            run,
            RunStatus.FAILED_UNEXPECTED,
            reason,
            error_type="WORKER_LOST",
        )
        repairs[f"running_{outcome}"] += 1
        logger.warning("Reconciler: run %s: %s -> %s", run.id, reason, outcome)
    db.session.commit()


def _repair_overdue(longest_timeout: int, repairs: Counter[str]) -> None:
    rows = db.session.execute(
        _OVERDUE, {"margin": TIMEOUT_MARGIN_SECONDS, "longest": longest_timeout}
    ).all()
    for row in rows:
        run = lifecycle.lock(row.id)
        assert run is not None
        if run.procrastinate_job_id is not None:  # stop the attempt if it is alive at all
            db.session.execute(CANCEL_JOB_SQL, {"id": run.procrastinate_job_id, "abort": True})
        message = (
            f"Timed out after {run.timeout_seconds or longest_timeout}s; the attempt did "
            "not stop by itself "
            f"within {TIMEOUT_MARGIN_SECONDS}s more, so the reconciler ended it."
        )
        lifecycle.end(
            db.session,
            run,
            RunStatus.TIMEOUT,
            message,
            event="job.timeout",
            data={"attempt": run.attempt, "reconciler": True},
        )
        repairs["running_overdue"] += 1
        logger.warning("Reconciler: run %s: %s", run.id, message)
    db.session.commit()


def _repair_lost_queue_jobs(stalled_seconds: int, repairs: Counter[str]) -> None:
    rows = db.session.execute(_LOST_QUEUE_JOBS, {"stalled": stalled_seconds}).all()
    for row in rows:
        run = lifecycle.lock(row.id)
        assert run is not None
        why = f"queue entry {row.queue_status or 'gone'}"
        if run.cancel_requested_at is not None:
            lifecycle.end_cancelled(db.session, run, data={"reconciler": why})
            repairs["queued_cancelled"] += 1
        else:
            if row.queue_status == "doing" and run.procrastinate_job_id is not None:
                db.session.execute(_FINISH_QUEUE_JOB, {"id": run.procrastinate_job_id})
            lifecycle.defer_attempt(db.session, run, run.scheduled_at)
            repairs["queued_requeued"] += 1
        logger.warning("Reconciler: %s run %s had its %s: repaired", run.status, run.id, why)
    db.session.commit()


def _release_waiting(repairs: Counter[str]) -> None:
    """WAITING runs whose dependencies all ended (a release that raced a finish)."""
    ready = db.session.scalars(
        text(
            """
        SELECT r.id FROM job_runs r
         WHERE r.status = 'WAITING'
           AND NOT EXISTS (SELECT 1 FROM run_dependencies d
                             JOIN job_runs dep ON dep.id = d.depends_on_run_id
                            WHERE d.run_id = r.id
                              AND dep.status IN ('PENDING', 'QUEUED', 'SCHEDULED',
                                                 'WAITING', 'RUNNING'))
         ORDER BY r.id FOR NO KEY UPDATE OF r SKIP LOCKED
        """
        )
    ).all()
    for run_id in ready:
        run = lifecycle.lock(run_id)
        assert run is not None
        deps = dependencies.dependencies_of(db.session, run_id)
        failed = [d for d in deps if d.status != RunStatus.COMPLETED_SUCCESS.value]
        if failed:
            first = failed[0]
            lifecycle.cancel_unstarted(
                db.session,
                run,
                f"Dependency run #{first.id} ({first.job_name}) ended {first.status}.",
                actor=None,
            )
            repairs["waiting_cancelled"] += 1
        else:
            lifecycle.queue_waiting(
                db.session, run, "dependencies met: " + ", ".join(f"#{d.id}" for d in deps)
            )
            repairs["waiting_released"] += 1
    db.session.commit()


def _expire_waiting(limit: timedelta, repairs: Counter[str]) -> None:
    """Cancel runs that have waited for their dependencies longer than ``limit``."""
    waiting = db.session.scalars(
        select(JobRun)
        .where(JobRun.status == RunStatus.WAITING.value, JobRun.created_at < utcnow() - limit)
        .order_by(JobRun.id)
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    minutes = int(limit.total_seconds() // 60)
    for run in waiting:
        if run.status != RunStatus.WAITING.value:
            continue  # cancelled just now with a run it waited for
        lifecycle.cancel_unstarted(
            db.session,
            run,
            f"Waited more than {minutes} minutes for its dependencies.",
            actor="scheduler",
        )
        repairs["waiting_expired"] += 1
    db.session.commit()


def _repair_orphan_queue_jobs(stalled_seconds: int, repairs: Counter[str]) -> None:
    rows = db.session.execute(_ORPHAN_DOING, {"stalled": stalled_seconds}).all()
    for row in rows:
        if row.task_name == lifecycle.EXECUTE_TASK:
            db.session.execute(_FINISH_QUEUE_JOB, {"id": row.id})
        else:  # a delivery, a tick: do it again
            db.session.execute(_RETRY_QUEUE_JOB, {"id": row.id})
        repairs["queue_job_orphaned"] += 1
    db.session.commit()


def _record(repairs: Counter[str]) -> None:
    """Add this pass's repairs to the cluster-wide totals (for /metrics)."""
    db.session.execute(
        text(
            """
        INSERT INTO maintenance_state (key, last_run_at, data)
        VALUES (:key, now(), jsonb_build_object('repairs', CAST(:repairs AS jsonb)))
        ON CONFLICT (key) DO UPDATE SET last_run_at = now(),
            data = jsonb_build_object('repairs', (
                SELECT coalesce(jsonb_object_agg(coalesce(old.k, new.k2), coalesce(old.v::int, 0)
                                                    + coalesce(new.v::int, 0)), '{}')
                  FROM jsonb_each_text(coalesce(maintenance_state.data->'repairs', '{}'))
                       AS old (k, v)
                  FULL JOIN jsonb_each_text(CAST(:repairs AS jsonb)) AS new (k2, v)
                       ON new.k2 = old.k
            ))
        """
        ),
        {"key": STATE_KEY, "repairs": json.dumps(dict(repairs))},
    )
    db.session.commit()


def state() -> dict[str, Any]:
    """When the reconciler last ran and its repairs so far, by kind."""
    row = db.session.execute(
        text("SELECT last_run_at, data FROM maintenance_state WHERE key = :key"),
        {"key": STATE_KEY},
    ).first()
    if row is None:
        return {"last_run_at": None, "repairs": {}}
    return {"last_run_at": row.last_run_at, "repairs": dict((row.data or {}).get("repairs", {}))}
