"""Starting runs: one transaction for the run row and its queue entry.

``start_run`` inserts the JobRun, flushes it, defers procrastinate's job on the
SQLAlchemy session's own psycopg connection, and commits once: if anything fails
before the commit, neither the run nor the queue entry exists.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from procrastinate import exceptions as procrastinate_exceptions
from sqlalchemy import Select, func, or_, select, text
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import load_only

from app import audit, command_policy, crypto, events, registry
from app.engine import lifecycle, queue
from app.errors import Conflict, NotFound, ValidationError
from app.extensions import db
from app.models import (
    ACTIVE_STATUSES,
    Device,
    Job,
    JobRun,
    RunStatus,
    User,
    utcnow,
)
from app.services import get_row, jobs

logger = logging.getLogger(__name__)

EXECUTE_TASK = "rookery.execute_run"

#: most jobs one start may chain through dependencies (each starts the next)
MAX_DEPENDENCY_DEPTH = 50


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


@dataclass
class _Start:
    """The runs one ``start_run`` writes (dependency runs first) and those they wait for."""

    created: list[JobRun] = field(default_factory=list)
    existing: list[JobRun] = field(default_factory=list)


def _refuse_endless_chain(chain: tuple[Job, ...], dependency: Job) -> None:
    """Refuse to start ``dependency`` again inside its own chain of starts (a cycle).

    Saving a job refuses cycles, but one may still be in the database (restored from
    a dump, written by hand): it ends here as a clear refusal, not in a RecursionError.
    """
    ids = [job.id for job in chain]
    if dependency.id in ids:
        cycle = " -> ".join(job.name for job in (*chain[ids.index(dependency.id) :], dependency))
        raise Conflict(
            f"Dependency cycle: {cycle}. Change what one of these jobs depends on, "
            "then start it again."
        )
    if len(chain) >= MAX_DEPENDENCY_DEPTH:
        raise Conflict(
            f"Job {chain[0].name!r} starts a chain of more than {MAX_DEPENDENCY_DEPTH} "
            "dependent jobs; shorten the chain, then start it again."
        )


_MARK_WAITED_FOR = text(
    "UPDATE job_runs SET has_dependants = true WHERE id IN (SELECT id FROM job_runs "
    "WHERE id = ANY(:ids) ORDER BY id FOR NO KEY UPDATE)"
)


def _lock_waited_for(start: _Start) -> None:
    """Lock the runs the new runs wait for (FOR SHARE, in id order) and re-read them.

    A run's ending locks its row before it writes the final status and releases the
    runs waiting for it. Holding this lock until the commit, the new runs are either
    committed before such an ending reads who waits (it waits for this lock, then
    releases them), or the ending committed first and is read here: a run that
    succeeded meanwhile releases the new runs now, one that failed refuses the start.
    In id order, as endings lock runs (a dependency's id is below its dependants'), so
    the two never deadlock.
    """
    ids = sorted({run.id for run in start.existing})
    if not ids:
        return
    # Marked, not only locked: a global run's ending is one statement whose snapshot
    # predates this commit; it re-reads its own row after the lock, so the mark tells
    # it that runs now wait for it (lifecycle.finish_global).
    db.session.execute(_MARK_WAITED_FOR, {"ids": ids})
    locked = db.session.scalars(
        select(JobRun)
        .where(JobRun.id.in_(ids))
        .order_by(JobRun.id)
        .with_for_update(read=True)
        .execution_options(populate_existing=True)
    ).all()
    ended = [run for run in locked if run.run_status.is_final]
    if not ended:
        return
    ended_badly = [run for run in ended if run.status != RunStatus.COMPLETED_SUCCESS.value]
    if ended_badly:
        listing = ", ".join(f"#{r.id} ({r.job_name}) {r.status}" for r in ended_badly)
        raise Conflict(
            f"Dependency run(s) ended unsuccessfully while this run was being started: "
            f"{listing}. Nothing was started."
        )
    for run in start.created:  # dependencies first: each sees its own as they are now
        if run.status == RunStatus.WAITING.value and all(
            d.status == RunStatus.COMPLETED_SUCCESS.value for d in run.depends_on
        ):
            lifecycle.queue_waiting(
                db.session,
                run,
                "dependencies met: " + ", ".join(f"#{d.id}" for d in run.depends_on),
            )


def start_run(
    job: Job,
    **options: Any,
) -> JobRun:
    """Create a run of ``job`` and queue it, atomically; returns the committed run.

    Options: triggered_by (required), actor, device_ids, schedule_at, signal_id,
    depends_on_runs (run ids to wait for), relaunch_of, commit. A job that depends on
    other jobs first starts (or reuses the active) run of each, and waits for them; a
    dependency cycle found on the way is a Conflict naming it. On any error the session
    is rolled back: nothing of the run remains.
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
    depends_on_runs: list[int] | None = None,
    relaunch_of: int | None = None,
    commit: bool = True,
    dependants: tuple[Job, ...] = (),
    start: _Start | None = None,
) -> JobRun:
    if not job.enabled:
        raise Conflict(f"Job {job.name!r} is disabled; enable it before running it.")
    job_type = registry.current().get(job.job_type)
    jobs.check_command_policy(job, actor)
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
    signal_id = signal_id or uuid.uuid4().hex
    top = start is None
    start = start or _Start()
    chain = (*dependants, job)
    waits_for = _runs_to_wait_for(depends_on_runs)
    start.existing.extend(waits_for)
    for dependency in job.depends_on:
        _refuse_endless_chain(chain, dependency)
        # "B depends on A" means "A, then B": reuse A's active run or start one.
        active = active_run(dependency)
        if active is not None:
            start.existing.append(active)
            waits_for.append(active)
            continue
        waits_for.append(
            _start_run(
                dependency,
                triggered_by=f"dependency of {job.name}",
                actor=actor,
                signal_id=signal_id,
                commit=False,
                dependants=chain,
                start=start,
            )
        )
    max_attempts, delay, cap = retry_policy(job)
    now = utcnow()
    later = schedule_at is not None and schedule_at > now + timedelta(seconds=1)
    pending = [d for d in waits_for if d.status != RunStatus.COMPLETED_SUCCESS.value]
    status = RunStatus.SCHEDULED if later else RunStatus.QUEUED
    if pending:
        status = RunStatus.WAITING
    # Inserted with the status it is committed with: PENDING is never seen outside,
    # not even in the insert's notification.
    run = JobRun(
        job_id=job.id,
        job_name=job.name,
        job_type=job.job_type,
        params=dict(job.params or {}),
        device_ids=device_ids,
        status=status.value,
        priority=job.priority,
        attempt=1,
        max_attempts=max_attempts,
        retry_delay_seconds=delay,
        retry_max_delay_seconds=cap,
        timeout_seconds=effective_timeout(job),
        triggered_by=triggered_by,
        triggered_by_user_id=actor.id if isinstance(actor, User) else None,
        signal_id=signal_id,
        relaunch_of_id=relaunch_of,
        depends_on=waits_for,
        queued_at=None if pending else now,
        scheduled_at=schedule_at if later and not pending else None,
    )
    db.session.add(run)
    db.session.flush()
    start.created.append(run)
    pre_data = _created_pre_data(job, job_type, run.params, device_ids)
    events.record(
        db.session,
        run,
        events.CREATED,
        f"run of {job.name} created",
        actor=_actor_name(actor),
        pre_data=pre_data,
        status=RunStatus.PENDING.value,
    )
    if pending:
        events.record(
            db.session,
            run,
            events.QUEUED,
            "waiting for run(s) " + ", ".join(f"#{d.id}" for d in pending),
            actor=_actor_name(actor),
            data={"depends_on_runs": [d.id for d in waits_for]},
        )
    else:
        # Sets only the queue's id: the run's notification trigger stays quiet.
        run.procrastinate_job_id = _defer(run, job, schedule_at if later else None)
        events.record(
            db.session,
            run,
            events.QUEUED,
            f"scheduled for {schedule_at.isoformat()}" if later and schedule_at else "queued",
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
    if top:
        _lock_waited_for(start)
    # Read before the commit expires them (a reload would cost two more queries).
    run_id, job_name, status = run.id, job.name, run.status
    if commit:
        db.session.commit()
    logger.info("Run %s of job %s %s (%s)", run_id, job_name, status.lower(), triggered_by)
    return run


def _created_pre_data(
    job: Job, job_type: registry.JobType, params: dict[str, Any], device_ids: list[int] | None
) -> dict[str, Any]:
    """The ``job.created`` event's pre_data: the params (secrets redacted) and targets."""
    pre_data: dict[str, Any] = {"params": crypto.redact_params(params, job_type.secret_params)}
    if job_type.targets == "devices":
        pre_data["targets"] = {
            "tags": [t.name for t in job.target_tags],
            "device_ids": device_ids
            if device_ids is not None
            else [d.id for d in job.target_devices],
        }
    return pre_data


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


def _runs_to_wait_for(run_ids: list[int] | None) -> list[JobRun]:
    if not run_ids:
        return []
    wanted = sorted({int(i) for i in run_ids})
    found = {r.id: r for r in db.session.scalars(select(JobRun).where(JobRun.id.in_(wanted)))}
    unknown = [i for i in wanted if i not in found]
    if unknown:
        raise ValidationError(
            f"Unknown run ids to wait for: {unknown}",
            fields={"depends_on_runs": f"Unknown: {unknown}"},
        )
    ended_badly = [
        r
        for r in found.values()
        if r.run_status.is_final and r.status != RunStatus.COMPLETED_SUCCESS.value
    ]
    if ended_badly:
        listing = ", ".join(f"#{r.id} ({r.status})" for r in ended_badly)
        raise Conflict(f"Cannot wait for runs that already ended unsuccessfully: {listing}.")
    return [found[i] for i in wanted]


def get_run(run_id: int) -> JobRun:
    return get_row(JobRun, run_id, "run", populate_existing=True)


def cancel_run(run_id: int, *, actor: User | str | None) -> JobRun:
    """Cancel a run: at once if it has not started, within seconds if it is running."""
    run = get_row(
        JobRun, run_id, "run", with_for_update={"key_share": True}, populate_existing=True
    )
    who = _actor_name(actor) or "an operator"
    if run.run_status.is_final:
        db.session.rollback()
        raise Conflict(f"Run #{run_id} already ended {run.status}; there is nothing to cancel.")
    if run.cancel_requested_at is not None:
        db.session.rollback()
        raise Conflict(
            f"Run #{run_id} is already being cancelled (asked by {run.cancelled_by}); it "
            "ends within seconds, or once its worker is found dead."
        )
    run.cancel_requested_at = utcnow()
    run.cancelled_by = who
    if run.status == RunStatus.RUNNING.value:
        # The worker's supervisor sees the abort (and the column) within a second or
        # two; if its worker is dead, the reconciler ends the run CANCELLED.
        if run.procrastinate_job_id is not None:
            db.session.execute(
                queue.CANCEL_JOB_SQL, {"id": run.procrastinate_job_id, "abort": True}
            )
        events.record(
            db.session,
            run,
            events.CANCELLED,
            f"cancel requested by {who}",
            actor=who,
            data={"requested": True},
        )
    else:
        lifecycle.cancel_unstarted(db.session, run, f"Cancelled by {who}.", actor=who)
    audit.record(
        actor=actor,
        action="cancel",
        object_type="run",
        object_id=run.id,
        summary=f"cancelled run #{run.id} of {run.job_name}",
    )
    db.session.commit()
    return run


def relaunch_run(
    run_id: int, *, failed_only: bool = False, actor: User | str | None = None
) -> JobRun:
    """Start a new run like a finished one: all its devices, or only those that failed."""
    from app.models import DeviceResult

    old = get_run(run_id)
    if not old.run_status.is_final:
        raise Conflict(f"Run #{run_id} is still {old.status}; relaunch it once it has ended.")
    job = db.session.get(Job, old.job_id) if old.job_id else None
    if job is None:
        raise Conflict(f"The job of run #{run_id} was deleted; it cannot be relaunched.")
    device_ids = old.device_ids
    if failed_only:
        device_ids = sorted(
            i
            for i in db.session.scalars(
                select(DeviceResult.device_id).where(
                    DeviceResult.run_id == run_id,
                    DeviceResult.status != "success",
                    DeviceResult.device_id.is_not(None),
                )
            )
        )
        if not device_ids:
            raise Conflict(f"Run #{run_id} has no failed devices to relaunch.")
    return start_run(
        job,
        triggered_by=f"relaunch:{run_id}",
        actor=actor,
        device_ids=device_ids,
        relaunch_of=run_id,
    )


def run_now(
    job: Job | str, *, name: str | None = None, eventlog: bool = True, **params: Any
) -> str:
    """Execute ``job`` synchronously in this process through the runner.

    ``job`` is a saved Job, a saved job's name, or a registered job type. A run row is
    written (triggered by ``run_now``) but nothing is queued and nothing is retried;
    exceptions propagate. Returns the result's message, or ``str(result)``.
    """
    from app.engine import runner

    definition, job_type = _resolve_for_run_now(job)
    stored = crypto.reveal_params(definition.params) if definition else {}
    approved = stored.pop(command_policy.APPROVED_BY, None)
    validated = registry.validate_params(job_type, {**stored, **params})
    commands = command_policy.job_commands(job_type.job_type, validated)
    if command_policy.first_refused(commands) is not None:
        # The caller is code on the server, trusted like the rookery command.
        validated[command_policy.APPROVED_BY] = approved if approved and not params else "run_now"
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
    outcome = runner.execute(run.id, worker_name="run_now", eventlog=eventlog)
    if outcome is None:
        return ""
    if outcome.exception is not None:
        raise outcome.exception
    return outcome.message or str(outcome.result)


def _resolve_for_run_now(job: Job | str) -> tuple[Job | None, registry.JobType]:
    types = registry.current()
    if isinstance(job, Job):
        return job, types.get(job.job_type)
    definition = db.session.scalar(select(Job).where(Job.name == job))
    if definition is not None:
        return definition, types.get(definition.job_type)
    return None, types.get(job)


#: Most rows one page of runs (or logs) shows; the API's ``limit`` is capped by it.
MAX_PAGE = 500


#: the columns a list of runs shows (``list_runs(brief=True)``)
BRIEF_COLUMNS = (
    "id",
    "job_id",
    "job_name",
    "job_type",
    "status",
    "progress_done",
    "progress_total",
    "triggered_by",
    "created_at",
    "duration_ms",
)


#: the status filter that stands for every run that did not fully succeed
ANY_FAILURE = "any_failure"
#: the statuses of ANY_FAILURE: some device or the whole run failed, timed out, or had
#: no credentials
FAILING_STATUSES = tuple(
    s.value
    for s in RunStatus
    if s.is_failure
    or s in (RunStatus.COMPLETED_PARTIAL_FAILURE, RunStatus.COMPLETED_NO_CREDENTIALS)
)
#: the trigger filter: kind -> how ``triggered_by`` starts
TRIGGERS: dict[str, str] = {
    "user": "user:",
    "api": "api:",
    "cli": "cli",
    "schedule": "schedule:",
    "relaunch": "relaunch:",
    "dependency": "dependency of ",
    "run_now": "run_now",
}


def list_runs(
    *,
    status: str | list[str] | None = None,
    job_type: str | None = None,
    job_id: int | None = None,
    device: str | None = None,
    trigger: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
    brief: bool = False,
) -> tuple[list[JobRun], int | None]:
    """Runs newest first, filtered; keyset-paginated on the id (``before_id``).

    ``status`` may hold ``any_failure`` (every status of FAILING_STATUSES); ``device``
    (a device's name) keeps runs with a result for it; ``trigger`` is a kind of TRIGGERS.
    Returns the page and the cursor of the next (older) page, or None at the end. The
    cursor stays cheap at any depth: no OFFSET, the primary key's index does the work.
    """
    from app.models import Device, DeviceResult

    limit = max(1, min(int(limit), MAX_PAGE))
    query = select(JobRun).order_by(JobRun.id.desc()).limit(limit + 1)
    if brief:  # what a list shows: not params, results, tracebacks
        query = query.options(load_only(*(getattr(JobRun, name) for name in BRIEF_COLUMNS)))
    statuses = [status] if isinstance(status, str) else list(status or [])
    if ANY_FAILURE in statuses:
        statuses = [s for s in statuses if s != ANY_FAILURE] + list(FAILING_STATUSES)
    if statuses:
        valid = {s.value for s in RunStatus}
        unknown = sorted(set(statuses) - valid)
        if unknown:
            raise ValidationError(
                f"Unknown status: {', '.join(unknown)}.",
                fields={"status": f"One of {', '.join(sorted(valid))}."},
            )
        query = query.where(JobRun.status.in_(statuses))
    if job_type:
        query = query.where(JobRun.job_type == job_type)
    if job_id is not None:
        query = query.where(JobRun.job_id == job_id)
    if device:
        device_id = db.session.scalar(select(Device.id).where(Device.name == device))
        if device_id is None:
            raise ValidationError(f"No device named {device!r}.", fields={"device": "Unknown."})
        query = query.where(
            select(DeviceResult.id)
            .where(DeviceResult.run_id == JobRun.id, DeviceResult.device_id == device_id)
            .exists()
        )
    if trigger:
        if trigger not in TRIGGERS:
            raise ValidationError(
                f"Unknown trigger: {trigger}.",
                fields={"trigger": f"One of {', '.join(TRIGGERS)}."},
            )
        start = TRIGGERS[trigger]
        if start.endswith((":", " ")):
            query = query.where(JobRun.triggered_by.startswith(start, autoescape=True))
        else:
            query = query.where(JobRun.triggered_by == start)
    if since is not None:
        query = query.where(JobRun.created_at >= since)
    if until is not None:
        query = query.where(JobRun.created_at < until)
    if before_id is not None:
        query = query.where(JobRun.id < before_id)
    rows = list(db.session.scalars(query))
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor


def job_names() -> list[tuple[int, str]]:
    """Every job's (id, name) by name: the choices of the runs list's job filter."""
    rows = db.session.execute(select(Job.id, Job.name).order_by(Job.name))
    return [(row[0], row[1]) for row in rows]


def device_results(run_id: int) -> list[Any]:
    """The per-device results of a run, by device name."""
    from app.models import DeviceResult

    return list(
        db.session.scalars(
            select(DeviceResult)
            .where(DeviceResult.run_id == run_id)
            .order_by(DeviceResult.device_name, DeviceResult.id)
        )
    )


#: the result status filter that stands for every status but success
RESULT_ANY_FAILURE = "any_failure"
#: what a list of results shows: every column but the output and the job's data, which
#: can be megabytes per device (a config, parsed records); ``device_result`` has them
RESULT_ROW_COLUMNS = (
    "id",
    "run_id",
    "device_id",
    "device_name",
    "status",
    "message",
    "credential_name",
    "commit_sha",
    "changed",
    "connect_attempts",
    "started_at",
    "finished_at",
    "duration_ms",
)


def results_query(
    run_id: int, *, status: list[str] | None = None, device: str | None = None
) -> Select[tuple[Any, int | None]]:
    """A run's results without their outputs: (result, output size in bytes or None),
    by device name; ``status`` may hold ``any_failure``; ``device`` is part of a name
    (any case). The caller orders and pages it."""
    from app.models import DeviceResult

    query = (
        select(DeviceResult, func.octet_length(DeviceResult.output).label("output_bytes"))
        .options(load_only(*(getattr(DeviceResult, name) for name in RESULT_ROW_COLUMNS)))
        .where(DeviceResult.run_id == run_id)
        .order_by(DeviceResult.device_name, DeviceResult.id)
    )
    statuses = list(status or [])
    if statuses:
        wanted = DeviceResult.status.in_([s for s in statuses if s != RESULT_ANY_FAILURE])
        if RESULT_ANY_FAILURE in statuses:
            wanted = or_(wanted, DeviceResult.status != "success")
        query = query.where(wanted)
    if device:
        query = query.where(DeviceResult.device_name.icontains(device, autoescape=True))
    return query


def result_summary(run_id: int) -> dict[str, Any]:
    """How many results the run has, by status, and how many changed a config (one
    aggregate over the run's results, whatever their number)."""
    from app.models import DeviceResult

    rows = db.session.execute(
        select(
            DeviceResult.status,
            func.count(),
            func.count().filter(DeviceResult.changed.is_(True)),
        )
        .where(DeviceResult.run_id == run_id)
        .group_by(DeviceResult.status)
        .order_by(DeviceResult.status)
    ).all()
    return {
        "total": sum(row[1] for row in rows),
        "by_status": {row[0]: row[1] for row in rows},
        "changed": sum(row[2] for row in rows),
    }


def device_result(run_id: int, device_name: str) -> Any:
    """A run's result for the device of that name, whole (its output too); NotFound when
    the run has none."""
    from app.models import DeviceResult

    run = get_run(run_id)
    result = db.session.scalar(
        select(DeviceResult)
        .where(DeviceResult.run_id == run.id, DeviceResult.device_name == device_name)
        .order_by(DeviceResult.id.desc())
        .limit(1)
    )
    if result is None:
        raise NotFound(f"Run #{run.id} has no result for device {device_name!r}.")
    return result


@dataclass
class WaitingDevice:
    """A device a run in flight targets that has no result yet."""

    id: int
    name: str
    #: when its work started in the current attempt (its first log line); None: queued
    started_at: datetime | None


def waiting_devices(run: JobRun, limit: int = 500) -> tuple[list[WaitingDevice], int]:
    """The devices a run in flight targets that have no result yet, by name (at most
    ``limit``), each with when it started working, and how many there are in all."""
    from app.engine.runner.units import target_query
    from app.models import Device, DeviceResult, JobLog

    query = target_query(run)
    if query is None or RunStatus(run.status).is_final:
        return [], 0
    done = select(DeviceResult.device_id).where(
        DeviceResult.run_id == run.id, DeviceResult.device_id.isnot(None)
    )
    rows = query.where(Device.id.not_in(done)).with_only_columns(Device.id, Device.name)
    count = db.session.scalar(select(func.count()).select_from(rows.order_by(None).subquery()))
    shown = [(row[0], row[1]) for row in db.session.execute(rows.limit(limit))]
    started: dict[int, datetime] = {}
    if shown:
        since = run.attempt_started_at or run.started_at or run.created_at
        started = dict(
            db.session.execute(
                select(JobLog.device_id, func.min(JobLog.at))
                .where(
                    JobLog.run_id == run.id,
                    JobLog.device_id.in_([device_id for device_id, _ in shown]),
                    JobLog.at >= since,  # this attempt's work, not an earlier one's
                )
                .group_by(JobLog.device_id)
            ).all()
        )
    waiting = [WaitingDevice(i, name, started.get(i)) for i, name in shown]
    return waiting, count or 0


def device_outputs(run_id: int, batch: int = 200) -> Iterator[tuple[str, str]]:
    """(device name, output) of every result of a run with an output, by device name,
    read ``batch`` rows at a time (a run of thousands of devices is not held in memory)."""
    from app.models import DeviceResult

    query = (
        select(DeviceResult.device_name, DeviceResult.output)
        .where(DeviceResult.run_id == run_id, DeviceResult.output.isnot(None))
        .order_by(DeviceResult.device_name, DeviceResult.id)
        .execution_options(yield_per=batch)
    )
    for row in db.session.execute(query):
        yield row[0], row[1]


def run_events_query(
    run_id: int, *, types: list[str] | None = None, after_id: int = 0
) -> Select[tuple[Any]]:
    """A run's events, oldest first (optionally only some types, or after an id)."""
    from app.models import Event

    query = select(Event).where(Event.run_id == run_id, Event.id > after_id).order_by(Event.id)
    if types:
        query = query.where(Event.type.in_(types))
    return query


def run_events(run_id: int, *, types: list[str] | None = None, after_id: int = 0) -> list[Any]:
    """A run's event trail, oldest first (optionally only some types, or after an id)."""
    return list(db.session.scalars(run_events_query(run_id, types=types, after_id=after_id)))


def last_runs(job_ids: list[int]) -> dict[int, JobRun]:
    """The newest run of each job, in one query (DISTINCT ON over the job/created index)."""
    if not job_ids:
        return {}
    rows = db.session.scalars(
        select(JobRun)
        .where(JobRun.job_id.in_(job_ids))
        .order_by(JobRun.job_id, JobRun.created_at.desc(), JobRun.id.desc())
        .ext(distinct_on(JobRun.job_id))
    )
    return {run.job_id: run for run in rows if run.job_id is not None}
