"""Starting runs: one transaction for the run row and its queue entry.

``start_run`` inserts the JobRun, flushes it, defers procrastinate's job on the
SQLAlchemy session's own psycopg connection, and commits once: if anything fails
before the commit, neither the run nor the queue entry exists.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from procrastinate import exceptions as procrastinate_exceptions
from sqlalchemy import select

from app import audit, crypto, events, queue, registry
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.models import ACTIVE_STATUSES, Device, Job, JobRun, RunStatus, User, utcnow

logger = logging.getLogger(__name__)

EXECUTE_TASK = "rookery.execute_run"


def _actor_name(actor: User | str | None) -> str | None:
    return actor.username if isinstance(actor, User) else actor


def retry_policy(job: Job) -> tuple[int, int, int]:
    """(max attempts, base delay, cap) of ``job``, settings filling what it leaves unset."""
    config = current_app.config
    retries = job.max_retries if job.max_retries is not None else config["ROOKERY_DEFAULT_RETRIES"]
    delay = job.retry_delay_seconds or config["ROOKERY_RETRY_DELAY_SECONDS"]
    cap = job.retry_max_delay_seconds or config["ROOKERY_RETRY_MAX_DELAY_SECONDS"]
    return 1 + max(0, retries), delay, max(cap, delay)


def effective_timeout(job: Job) -> int:
    config = current_app.config
    wanted = job.timeout_seconds or config["ROOKERY_JOB_TIMEOUT_SECONDS"]
    return min(wanted, config["ROOKERY_JOB_TIMEOUT_MAX_SECONDS"])


def active_run(job: Job) -> JobRun | None:
    return db.session.scalar(
        select(JobRun)
        .where(JobRun.job_id == job.id, JobRun.status.in_([s.value for s in ACTIVE_STATUSES]))
        .order_by(JobRun.id)
        .limit(1)
    )


def start_run(
    job: Job,
    **options: Any,
) -> JobRun:
    """Create a run of ``job`` and queue it, atomically; returns the committed run.

    Options: triggered_by (required), actor, device_ids, schedule_at, signal_id, commit.
    On any error the session is rolled back: nothing of the run remains.
    """
    try:
        return _start_run(job, **options)
    except BaseException:
        db.session.rollback()
        raise


def _start_run(
    job: Job,
    *,
    triggered_by: str,
    actor: User | str | None = None,
    device_ids: list[int] | None = None,
    schedule_at: datetime | None = None,
    signal_id: str | None = None,
    commit: bool = True,
) -> JobRun:
    if not job.enabled:
        raise Conflict(f"Job {job.name!r} is disabled; enable it before running it.")
    job_type = registry.current().get(job.job_type)
    if schedule_at is not None and schedule_at.tzinfo is None:
        raise ValidationError(
            "schedule_at needs a time zone (e.g. 2026-12-01T10:00:00Z).",
            fields={"schedule_at": "Give a time zone."},
        )
    if device_ids is not None:
        device_ids = sorted({int(i) for i in device_ids})
        known = set(db.session.scalars(select(Device.id).where(Device.id.in_(device_ids))))
        unknown = [i for i in device_ids if i not in known]
        if unknown:
            raise ValidationError(
                f"Unknown device ids: {unknown}", fields={"device_ids": f"Unknown: {unknown}"}
            )
    if job.no_overlap:
        running = active_run(job)
        if running is not None:
            raise Conflict(
                f"Job {job.name!r} already has run #{running.id} {running.status.lower()}; "
                "it does not overlap itself (cancel that run or wait for it)."
            )
    max_attempts, delay, cap = retry_policy(job)
    now = utcnow()
    later = schedule_at is not None and schedule_at > now + timedelta(seconds=1)
    run = JobRun(
        job_id=job.id,
        job_name=job.name,
        job_type=job.job_type,
        params=dict(job.params or {}),
        device_ids=device_ids,
        status=RunStatus.PENDING.value,
        priority=job.priority,
        attempt=1,
        max_attempts=max_attempts,
        retry_delay_seconds=delay,
        retry_max_delay_seconds=cap,
        timeout_seconds=effective_timeout(job),
        triggered_by=triggered_by,
        triggered_by_user_id=actor.id if isinstance(actor, User) else None,
        signal_id=signal_id or uuid.uuid4().hex,
    )
    db.session.add(run)
    db.session.flush()
    pre_data = {
        "params": crypto.redact_params(run.params, job_type.secret_params),
        "targets": {
            "tags": [t.name for t in job.target_tags],
            "device_ids": device_ids
            if device_ids is not None
            else [d.id for d in job.target_devices],
        },
    }
    events.record(
        db.session,
        run,
        events.CREATED,
        f"run of {job.name} created",
        actor=_actor_name(actor),
        pre_data=pre_data,
    )
    run.procrastinate_job_id = _defer(run, job, schedule_at if later else None)
    run.status = (RunStatus.SCHEDULED if later else RunStatus.QUEUED).value
    run.queued_at = now
    run.scheduled_at = schedule_at if later else None
    events.record(
        db.session,
        run,
        events.QUEUED,
        f"scheduled for {schedule_at.isoformat()}" if later else "queued",
        actor=_actor_name(actor),
        data={"priority": run.priority},
    )
    audit.record(
        actor=actor,
        action="run",
        object_type="job",
        object_id=job.id,
        summary=f"started run #{run.id} of {job.name} ({triggered_by})",
    )
    if commit:
        db.session.commit()
    logger.info("Run %s of job %s queued (%s)", run.id, job.name, triggered_by)
    return run


def _defer(run: JobRun, job: Job, schedule_at: datetime | None) -> int:
    connection = db.session.connection().connection.driver_connection
    options: dict[str, Any] = {"priority": run.priority}
    if schedule_at is not None:
        options["schedule_at"] = schedule_at
    if not job.no_overlap:
        return queue.defer_in_transaction(connection, EXECUTE_TASK, {"run_id": run.id}, **options)
    # A queueing lock refuses a second queued run of this job even when two starts race
    # past the check above; the savepoint keeps that refusal from breaking the transaction.
    options["queueing_lock"] = f"job:{job.id}"
    try:
        with db.session.begin_nested():
            return queue.defer_in_transaction(
                connection, EXECUTE_TASK, {"run_id": run.id}, **options
            )
    except procrastinate_exceptions.AlreadyEnqueued:
        raise Conflict(
            f"Job {job.name!r} already has a run queued; it does not overlap itself."
        ) from None


def run_now(
    job: Job | str, *, name: str | None = None, eventlog: bool = True, **params: Any
) -> str:
    """Execute ``job`` synchronously in this process through the runner.

    ``job`` is a saved Job, a saved job's name, or a registered job type. A run row is
    written (triggered by ``run_now``) but nothing is queued and nothing is retried;
    exceptions propagate. Returns the result's message, or ``str(result)``.
    """
    from app import runner

    definition, job_type = _resolve_for_run_now(job)
    stored = crypto.reveal_params(definition.params) if definition else {}
    validated = registry.validate_params(job_type, {**stored, **params})
    run = JobRun(
        job_id=definition.id if definition else None,
        job_name=name or (definition.name if definition else job_type.job_type),
        job_type=job_type.job_type,
        params=crypto.seal_params(validated, job_type.secret_params),
        status=RunStatus.QUEUED.value,
        priority=definition.priority if definition else 5,
        max_attempts=1,
        timeout_seconds=effective_timeout(definition)
        if definition
        else current_app.config["ROOKERY_JOB_TIMEOUT_SECONDS"],
        triggered_by="run_now",
        signal_id=uuid.uuid4().hex,
        queued_at=utcnow(),
    )
    db.session.add(run)
    db.session.flush()
    events.record(
        db.session,
        run,
        events.CREATED,
        "run_now",
        eventlog=eventlog,
        pre_data={"params": crypto.redact_params(validated, job_type.secret_params)},
    )
    db.session.commit()
    outcome = runner.execute(run.id, attempt=1, worker_name="run_now", eventlog=eventlog)
    if outcome is None:
        return ""
    return outcome.message or str(outcome.result)


def _resolve_for_run_now(job: Job | str) -> tuple[Job | None, registry.JobType]:
    types = registry.current()
    if isinstance(job, Job):
        return job, types.get(job.job_type)
    definition = db.session.scalar(select(Job).where(Job.name == job))
    if definition is not None:
        return definition, types.get(definition.job_type)
    return None, types.get(job)
