"""The scheduler's tick: start a run of every schedule that came due, once per fire time.

procrastinate defers ``rookery.schedule_tick`` every minute (its periodic deferrer runs
in every worker; the database keeps one job per minute), and whichever worker takes it
calls ``tick``. Ticks may still overlap — several workers, a late tick, a manual call —
so each schedule is fired in a transaction of its own that

1. locks the schedule row (``FOR UPDATE SKIP LOCKED``: a schedule another tick holds is
   that tick's business),
2. claims the fire time by inserting the unique (schedule, fire time) row,
3. starts the run (row and queue entry, on the same connection) and
4. moves ``next_fire_at`` on to the first slot after now,

and commits once: a slot is fired exactly once, and a schedule that missed many slots
while no worker ran fires once on catch-up, not once per missed slot. A run refused
(the job does not overlap itself and is still running) leaves a fire without a run
and a warning in the scheduler's log. Slots that pass while the job is disabled are
stepped over, so enabling a job does not start a catch-up run.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from flask import has_app_context
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.dialects.postgresql import insert

from app import logs
from app.engine import queue
from app.engine.queue import HOUSEKEEPING_QUEUE, queue_app
from app.errors import Conflict, RookeryError
from app.extensions import db
from app.models import Schedule, ScheduleFire, utcnow
from app.services import runs, schedules

logger = logging.getLogger(__name__)

TASK_NAME = "rookery.schedule_tick"
LOG_SOURCE = "worker.scheduler"
#: above every run (runs take 0-100), so a backlog of runs never delays the tick
TICK_PRIORITY = 101


def tick(now: datetime | None = None) -> list[int]:
    """Fire every schedule due at ``now`` (default: the clock); returns the runs started.

    Commits once per schedule it fires: call it with nothing pending in the session.
    """
    if has_app_context():
        return _tick(now or utcnow())
    with queue.flask_app().app_context():
        try:
            return _tick(now or utcnow())
        finally:
            db.session.remove()


def _tick(now: datetime) -> list[int]:
    due = db.session.scalars(
        select(Schedule.id)
        .where(Schedule.enabled.is_(True), Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at, Schedule.id)
    ).all()
    signal_id = uuid.uuid4().hex
    started: list[int] = []
    for schedule_id in due:
        try:
            run_id = _fire(schedule_id, now, signal_id)
        except Exception as exc:
            # It stays due: the next tick tries again (a lost connection, a bug).
            db.session.rollback()
            logger.exception("Schedule %s could not be fired", schedule_id)
            _log_failure(schedule_id, exc)
            continue
        if run_id is not None:
            started.append(run_id)
    if due:
        logger.info("Tick at %s: %d due, %d run(s) started", now, len(due), len(started))
    return started


def _lock(schedule_id: int, *condition: ColumnElement[bool]) -> Schedule | None:
    return db.session.scalar(
        select(Schedule)
        .where(Schedule.id == schedule_id, Schedule.enabled.is_(True), *condition)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )


def _claim(schedule_id: int, fire_at: datetime) -> int | None:
    """Insert the (schedule, fire time) row; None if some tick already has it."""
    return db.session.execute(
        insert(ScheduleFire)
        .values(schedule_id=schedule_id, fire_at=fire_at, created_at=utcnow())
        .on_conflict_do_nothing(constraint="uq_schedule_fires_slot")
        .returning(ScheduleFire.id)
    ).scalar_one_or_none()


def _advance(schedule: Schedule, fire_at: datetime, now: datetime, *, fired: bool) -> None:
    if fired:
        schedule.last_fire_at = fire_at
    if schedule.kind == "once":
        schedule.enabled = False
        schedule.next_fire_at = None
    else:
        # From now, not from fire_at: missed slots collapse into the fire just made.
        schedule.next_fire_at = schedules.next_fire_after(schedule, max(now, fire_at))


def _fire(schedule_id: int, now: datetime, signal_id: str) -> int | None:
    """Fire one due schedule in one transaction; the id of the run started, if any."""
    schedule = _lock(schedule_id, Schedule.next_fire_at <= now)
    if schedule is None:  # another tick holds it, or has fired it already
        db.session.rollback()
        return None
    job = schedule.job
    job_name = job.name
    fire_at = schedule.next_fire_at
    assert fire_at is not None
    if not job.enabled:
        logger.debug(
            "Schedule %s: job %s is disabled, slot %s passes", schedule_id, job_name, fire_at
        )
        _advance(schedule, fire_at, now, fired=False)
        db.session.commit()
        return None
    fire_id = _claim(schedule_id, fire_at)
    if fire_id is None:  # fired by another tick; only the advance is left to do
        _advance(schedule, fire_at, now, fired=True)
        db.session.commit()
        return None
    try:
        run = runs.start_run(
            job,
            triggered_by=f"schedule:{schedule_id}",
            actor="scheduler",
            signal_id=signal_id,
            commit=False,
        )
    except RookeryError as exc:
        # start_run rolls the whole transaction back (fire claim and lock included),
        # so the skipped fire is recorded in a transaction of its own.
        db.session.rollback()
        _record_skip(schedule_id, fire_at, now, exc)
        return None
    db.session.execute(update(ScheduleFire).where(ScheduleFire.id == fire_id).values(run_id=run.id))
    _advance(schedule, fire_at, now, fired=True)
    run_id = run.id
    db.session.commit()
    logger.info(
        "Schedule %s fired for %s: run %s of job %s", schedule_id, fire_at, run_id, job_name
    )
    return run_id


def _record_skip(schedule_id: int, fire_at: datetime, now: datetime, reason: RookeryError) -> None:
    """Record the fire at ``fire_at`` without a run, say why in the log, move on."""
    schedule = _lock(schedule_id, Schedule.next_fire_at == fire_at)
    if schedule is None:  # another tick took this slot over meanwhile
        db.session.rollback()
        return
    fire_id = _claim(schedule_id, fire_at)
    job = schedule.job
    if fire_id is not None:
        logs.write(
            level="warning" if isinstance(reason, Conflict) else "error",
            log_type="scheduler",
            source=LOG_SOURCE,
            message=f"Schedule #{schedule_id} of job {job.name}: the fire due at "
            f"{fire_at:%Y-%m-%d %H:%M} UTC started no run: {reason}",
            meta={
                "schedule_id": schedule_id,
                "fire_id": fire_id,
                "fire_at": fire_at.isoformat(),
                "reason": str(reason),
                "error_type": type(reason).__name__,
            },
            job_id=job.id,
            job_type=job.job_type,
        )
    _advance(schedule, fire_at, now, fired=True)
    db.session.commit()
    logger.warning("Schedule %s skipped its fire at %s: %s", schedule_id, fire_at, reason)


def _log_failure(schedule_id: int, exc: Exception) -> None:
    try:
        logs.write(
            level="error",
            log_type="scheduler",
            source=LOG_SOURCE,
            message=f"Schedule #{schedule_id} could not be fired; the next tick retries: "
            f"{type(exc).__name__}: {exc}",
            meta={"schedule_id": schedule_id, "error_type": type(exc).__name__},
        )
        db.session.commit()
    except Exception:
        db.session.rollback()
        logger.exception("Could not log the failure of schedule %s", schedule_id)


@queue_app.periodic(cron="* * * * *", periodic_id="schedule-tick")
@queue_app.task(
    name=TASK_NAME,
    queue=HOUSEKEEPING_QUEUE,
    queueing_lock=TASK_NAME,
    pass_context=False,
    priority=TICK_PRIORITY,
)
def schedule_tick(timestamp: int) -> list[int]:
    """Fire the schedules that came due (procrastinate defers this every minute).

    ``timestamp`` is the minute procrastinate deferred it for; the tick goes by the
    clock instead, so a tick that waited in the queue still fires what is due now.
    """
    return tick()
