"""The run state machine: the one place that changes a run's status.

Every transition is a guarded write of the run's row: the run, the attempt it expects
to be current and the status it expects to leave. The attempt number is a fencing
token: a worker whose attempt is no longer current (the reconciler gave the run to
another attempt, or ended it) matches nothing here, so it cannot write the run's
status, results or progress, and it stops when it notices (see fence.py). The
database backs this with a trigger: a final status never changes and an attempt
number never goes back (migration 0006).

    (insert) QUEUED | SCHEDULED | WAITING          services.runs.start_run
    WAITING -> QUEUED | CANCELLED                  release_dependants, cancel_unstarted
    QUEUED | SCHEDULED -> RUNNING                  claim (the queue job named on the run)
    RUNNING -> SCHEDULED | QUEUED                  next_attempt, hand_back (new queue job)
    any active -> final                            end (+ webhooks, dependants released)

A new attempt always gets a new queue job, deferred in the transaction that writes
the run's status, so the run and its queue job can never disagree after a crash;
the reconciler repairs what a dead worker or a lost database connection left behind.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import select
from sqlalchemy.orm import Session, scoped_session

from app import database, events, logs, webhooks
from app.engine import queue
from app.extensions import db
from app.models import JobRun, RunStatus, run_dependencies, utcnow

logger = logging.getLogger(__name__)

EXECUTE_TASK = "rookery.execute_run"

#: statuses a run is claimed from by the worker its queue job reaches
CLAIMABLE = (RunStatus.QUEUED.value, RunStatus.SCHEDULED.value)


# ------------------------------------------------------------------ claiming


def claim(
    run_id: int, queue_job_id: int | None, worker_name: str | None, *, eventlog: bool = True
) -> Any:
    """Start the run's next attempt; its row (with ``attempt``), or None.

    Only the queue job the run names may claim it (a queue job left over from an
    attempt the reconciler replaced matches nothing), and only from QUEUED or
    SCHEDULED. The attempt number goes up by one, except for the first claim. One
    statement in autocommit: the UPDATE, then the ``job.started`` event from it.
    """
    now = utcnow()
    with database.autocommit(db.engine) as connection:
        cursor = connection.cursor(row_factory=namedtuple_row)
        return cursor.execute(
            _CLAIM_SQL,
            {
                "run_id": run_id,
                "queue_job_id": queue_job_id,
                "now": now,
                "worker": worker_name,
                "on_worker": f" on {worker_name}" if worker_name else "",
                "worker_data": worker_name,
                "eventlog": events.enabled(eventlog),
            },
        ).fetchone()


_CLAIM_SQL = f"""
    WITH r AS (
        UPDATE job_runs SET status = 'RUNNING',
            attempt = CASE WHEN started_at IS NULL THEN attempt ELSE attempt + 1 END,
            max_attempts = greatest(max_attempts,
                CASE WHEN started_at IS NULL THEN attempt ELSE attempt + 1 END),
            started_at = coalesce(started_at, %(now)s), attempt_started_at = %(now)s,
            scheduled_at = NULL, worker_name = %(worker)s, progress_done = 0
        WHERE id = %(run_id)s AND status IN {CLAIMABLE}
            AND procrastinate_job_id IS NOT DISTINCT FROM %(queue_job_id)s
        RETURNING id, job_id, job_name, job_type, params, attempt, max_attempts,
            timeout_seconds, signal_id
    ), e AS (
        INSERT INTO events (at, type, status, message, run_id, job_id, data, signal_id)
        SELECT %(now)s, '{events.STARTED}', 'RUNNING',
            'attempt ' || r.attempt || ' of ' || r.max_attempts || %(on_worker)s,
            r.id, r.job_id,
            jsonb_build_object('attempt', r.attempt, 'worker', %(worker_data)s::text),
            r.signal_id
        FROM r WHERE %(eventlog)s
    )
    SELECT * FROM r
    """


def lock(run_id: int, session: Session | None = None) -> JobRun | None:
    """The run, row-locked (FOR NO KEY UPDATE: rows referencing it need not wait)."""
    return (session or db.session).get(
        JobRun, run_id, with_for_update={"key_share": True}, populate_existing=True
    )


def lock_current(run_id: int, attempt: int) -> JobRun | None:
    """The run, locked, if it is still RUNNING this attempt (else None, rolled back)."""
    run = lock(run_id)
    if run is None or run.status != RunStatus.RUNNING.value or run.attempt != attempt:
        db.session.rollback()
        return None
    return run


def is_current(run_id: int, attempt: int) -> bool:
    """Whether ``attempt`` is still the run's live attempt (a read, no lock)."""
    row = db.session.execute(
        select(JobRun.status, JobRun.attempt).where(JobRun.id == run_id)
    ).first()
    db.session.rollback()
    return row is not None and row.status == RunStatus.RUNNING.value and row.attempt == attempt


# ------------------------------------------------------------------- attempts


def defer_attempt(session: Session, run: JobRun, at: datetime | None = None) -> None:
    """A new queue job for the run's next claim, in the session's transaction."""
    options: dict[str, Any] = {"priority": run.priority}
    if at is not None and at > utcnow():
        options["schedule_at"] = at
    connection = session.connection().connection.driver_connection
    run.procrastinate_job_id = queue.defer_in_transaction(
        connection, EXECUTE_TASK, {"run_id": run.id}, **options
    )


def backoff_delay(run: JobRun, attempt: int) -> int:
    """Seconds before attempt ``attempt + 1``: base * 2^(attempt-1), capped."""
    return min(run.retry_delay_seconds * 2 ** max(0, attempt - 1), run.retry_max_delay_seconds)


def retry_or_fail(
    session: Session,
    run: JobRun,
    status: RunStatus,
    error: str,
    *,
    trace: str | None = None,
    retry: bool = True,
    eventlog: bool = True,
    error_type: str = "UNEXPECTED",
) -> str:
    """An attempt of the locked RUNNING ``run`` failed: schedule the next one or end it.

    A requested cancel wins (CANCELLED); otherwise a new attempt when ``retry`` and
    attempts remain, else ``status``. Returns "cancelled", "retry" or "failed". No
    commit.
    """
    attempt = run.attempt
    run.error = error
    run.error_traceback = trace
    logs.write(
        level="error",
        log_type="runner",
        source="worker.runner",
        run_id=run.id,
        job_id=run.job_id,
        job_type=run.job_type,
        message=f"Attempt {attempt} failed: {error}",
        meta={"error_type": error_type, "attempt": attempt},
    )
    if run.cancel_requested_at is not None:
        end_cancelled(session, run, eventlog=eventlog)
        return "cancelled"
    if retry and attempt < run.max_attempts:
        delay = backoff_delay(run, attempt)
        retry_at = utcnow() + timedelta(seconds=delay)
        run.status = RunStatus.SCHEDULED.value
        run.scheduled_at = retry_at
        defer_attempt(session, run, retry_at)
        events.record(
            session,
            run,
            events.RETRIED,
            f"attempt {attempt} of {run.max_attempts} failed ({error}); retrying in {delay}s",
            eventlog=eventlog,
            exception=trace,
            data={
                "attempt": attempt,
                "next_attempt": attempt + 1,
                "delay_seconds": delay,
                "retry_at": retry_at.isoformat(),
                "failed_status": status.value,
            },
        )
        return "retry"
    end(
        session,
        run,
        status,
        error,
        event=events.FAILED,
        exception=trace,
        data={"attempt": attempt, "error_type": error_type},
        eventlog=eventlog,
    )
    return "failed"


def hand_back(session: Session, run: JobRun, message: str, data: dict[str, Any]) -> None:
    """The worker stops (not the run's fault): a fresh attempt, queued now. No commit."""
    if run.cancel_requested_at is not None:
        end_cancelled(session, run, data=data)
        return
    run.status = RunStatus.QUEUED.value
    run.max_attempts += 1
    run.queued_at = utcnow()
    defer_attempt(session, run)
    events.record(
        session,
        run,
        events.RETRIED,
        message,
        data={**data, "next_attempt": run.attempt + 1},
    )


# ------------------------------------------------------------------- endings


def end(
    session: Session,
    run: JobRun,
    status: RunStatus,
    message: str,
    *,
    event: str = events.COMPLETED,
    result: dict[str, Any] | None = None,
    eventlog: bool = True,
    actor: str | None = None,
    exception: str | None = None,
    data: dict[str, Any] | None = None,
    post_data: dict[str, Any] | None = None,
) -> None:
    """The run's final status, its event, webhooks and waiting dependants. No commit."""
    run.status = status.value
    run.message = message
    run.result = result
    run.finished_at = utcnow()
    run.scheduled_at = None
    if run.started_at is not None:
        run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
    if status is RunStatus.COMPLETED_SUCCESS:
        run.error = None  # an earlier attempt's failure is history, in the events
        run.error_traceback = None
    webhooks.notify_run_ended(session, run)
    events.record(
        session,
        run,
        event,
        message,
        eventlog=eventlog,
        actor=actor,
        result=result,
        exception=exception,
        data=data,
        post_data=post_data,
    )
    release_dependants(session, run)


def end_cancelled(
    session: Session, run: JobRun, *, data: dict[str, Any] | None = None, eventlog: bool = True
) -> None:
    """End a run whose cancel was requested (or that an operator cancels before it ran)."""
    message = f"Cancelled by {run.cancelled_by or 'an operator'}."
    end(
        session,
        run,
        RunStatus.CANCELLED,
        message,
        event=events.CANCELLED,
        actor=run.cancelled_by,
        data=data,
        eventlog=eventlog,
    )


def cancel_unstarted(session: Session, run: JobRun, reason: str, *, actor: str | None) -> None:
    """End a run that never started (queued, scheduled, waiting) as CANCELLED."""
    if run.procrastinate_job_id is not None:
        session.execute(queue.CANCEL_JOB_SQL, {"id": run.procrastinate_job_id, "abort": False})
    run.cancelled_by = run.cancelled_by or actor or "dependencies"
    end(session, run, RunStatus.CANCELLED, reason, event=events.CANCELLED, actor=actor)


# ---------------------------------------------------------------- dependants


def queue_waiting(session: Session, run: JobRun, message: str, *, actor: str | None = None) -> None:
    """WAITING -> QUEUED: defer the run's execution (no commit)."""
    defer_attempt(session, run)
    run.status = RunStatus.QUEUED.value
    run.queued_at = utcnow()
    events.record(
        session, run, events.QUEUED, message, actor=actor, data={"priority": run.priority}
    )


def release_dependants(session: Session, run: JobRun) -> None:
    """After ``run`` ended: queue dependants whose runs all succeeded, cancel the others.

    Called in the transaction that writes the final status, so a crash can never leave
    a dependant waiting for a run that already ended (the reconciler also checks).
    """
    from app.engine import dependencies

    waiting = list(
        session.scalars(
            select(JobRun)
            .join(run_dependencies, run_dependencies.c.run_id == JobRun.id)
            .where(
                run_dependencies.c.depends_on_run_id == run.id,
                JobRun.status == RunStatus.WAITING.value,
            )
            .order_by(JobRun.id)
            .with_for_update(of=JobRun, key_share=True)
        )
    )
    for dependant in waiting:
        if run.status != RunStatus.COMPLETED_SUCCESS.value:
            cancel_unstarted(
                session,
                dependant,
                f"Dependency run #{run.id} ({run.job_name}) ended {run.status}.",
                actor=None,
            )
            continue
        deps = dependencies.dependencies_of(session, dependant.id)
        if all(d.status == RunStatus.COMPLETED_SUCCESS.value for d in deps):
            queue_waiting(
                session, dependant, "dependencies met: " + ", ".join(f"#{d.id}" for d in deps)
            )
            logger.info("Run %s released: its dependencies succeeded", dependant.id)


# ------------------------------------------------- a global unit's ending, fast


def finish_global(
    session: Session | scoped_session[Session],
    run_id: int,
    attempt: int,
    status: RunStatus,
    values: dict[str, Any],
) -> bool:
    """Write a global unit's final status and ``job.completed`` event (no commit).

    ``values`` holds message, result, pre_data, post_data and eventlog. What
    ``lock_current`` + ``end`` do, in one statement for the common case: the UPDATE
    only matches while the run is RUNNING this attempt (it locks the row and
    re-checks), the event is inserted from the updated row, and the same statement
    says whether any run waits for this one. Only when some run waits, or a webhook
    may be due, is the run loaded and handed to the usual helpers, in this
    transaction. False when the run is no longer RUNNING this attempt.
    """
    session.flush()  # the unit's own pending ORM writes go first
    arguments = {
        "run_id": run_id,
        "attempt": attempt,
        "now": utcnow(),
        "status": status.value,
        "success": status is RunStatus.COMPLETED_SUCCESS,
        "message": values["message"],
        "result": values["result"],
        "event_message": values["message"] or status.value,
        "pre_data": values.get("pre_data"),
        "post_data": values.get("post_data"),
        "eventlog": events.enabled(values.get("eventlog", True)),
    }
    for key in ("result", "pre_data", "post_data"):
        if arguments[key] is not None:
            arguments[key] = Jsonb(arguments[key])
    own = session() if isinstance(session, scoped_session) else session
    if not own.in_transaction() and not webhooks.events_for_outcome(status.value, values["result"]):
        # The unit wrote nothing and no webhook is due: the ending is one statement,
        # its own transaction. It does nothing when some run waits for this one (the
        # row's mark, re-read after any lock wait): the transaction below releases
        # them with the ending, and also tells a run no longer current.
        with database.autocommit(db.engine) as connection:
            if connection.execute(_FINISH_ALONE_SQL, arguments).fetchone()[0]:
                return True
    connection = session.connection().connection.driver_connection
    cursor = connection.cursor(row_factory=namedtuple_row)
    row = cursor.execute(_FINISH_SQL, arguments).fetchone()
    if row is None:
        return False
    if row.has_dependants or (row.job_id is not None and webhooks.events_for(row)):
        run = session.get(JobRun, run_id, populate_existing=True)
        assert run is not None
        webhooks.notify_run_ended(session, run)
        release_dependants(session, run)
    return True


def _finish_sql(guard: str, answer: str) -> str:
    """A global run's ending: the UPDATE (``guard`` added to its WHERE), the event, then
    ``answer`` (a SELECT; the CTE ``r`` holds the updated row, if any)."""
    return f"""
    WITH r AS (
        UPDATE job_runs SET status = %(status)s, message = %(message)s,
            result = %(result)s::jsonb, finished_at = %(now)s,
            error = CASE WHEN %(success)s THEN NULL ELSE error END,
            error_traceback = CASE WHEN %(success)s THEN NULL ELSE error_traceback END,
            duration_ms = CASE WHEN started_at IS NULL THEN duration_ms
                ELSE floor(extract(epoch FROM (%(now)s - started_at)) * 1000)::integer END,
            progress_total = CASE WHEN progress_total = 0 THEN 1 ELSE progress_total END,
            progress_done = CASE WHEN progress_total = 0 THEN 1 ELSE progress_total END
        WHERE id = %(run_id)s AND status = 'RUNNING' AND attempt = %(attempt)s {guard}
        RETURNING id, job_id, status, result, signal_id, has_dependants
    ), e AS (
        INSERT INTO events (at, type, status, message, run_id, job_id, result, pre_data,
            post_data, signal_id)
        SELECT %(now)s, '{events.COMPLETED}', r.status, %(event_message)s, r.id, r.job_id,
            %(result)s::jsonb, %(pre_data)s::jsonb, %(post_data)s::jsonb, r.signal_id
        FROM r WHERE %(eventlog)s
    )
    {answer}
    """


#: A global run's ending in one round trip, in the unit's transaction. RETURNING reads
#: the row as updated (after any lock wait), so ``has_dependants`` is current even when
#: a run that waits for this one was committed after the statement began.
_FINISH_SQL = _finish_sql("", "SELECT r.id, r.job_id, r.status, r.result, r.has_dependants FROM r")

#: The ending of a global run that wrote nothing, in autocommit: only while the run is
#: RUNNING this attempt and no run waits for it. The guard is a column of the row
#: itself, so PostgreSQL re-checks it on the row's newest version after waiting for a
#: lock (a subquery would read the statement's older snapshot and miss a dependant
#: committed meanwhile).
_FINISH_ALONE_SQL = _finish_sql("AND NOT has_dependants", "SELECT EXISTS (SELECT 1 FROM r)")
