"""One attempt of one run: claim it, run its units under supervision, end it.

A global job (``targets: "none"``) is one unit; a device job has one unit per device
(units.py), all at once or, when its module has ``waves``, one wave after the other
(``job_api.Wave``: a canary, then waves, a pause between them, a rollback wave). The
runner's own thread supervises them: it stops the attempt when the run is cancelled,
when its timeout passes, when the worker shuts down, or when the attempt is no longer
current (the reconciler moved the run on) — devices not started are skipped, driver
sessions in flight are closed, and the worker's slot is free again at once.

Whatever goes wrong after the claim ends the attempt through ``endings.fail``: the
next attempt (a new queue job) or a final FAILED_* status, never a run left RUNNING.
If even that cannot be written (the database is gone), the reconciler repairs the
run once it can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from types import MappingProxyType
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from app import crypto, dispatch, registry
from app.engine import lifecycle
from app.engine.runner import endings, units
from app.engine.runner.endings import Outcome
from app.engine.runner.units import POLL_SECONDS, Attempt, Control
from app.extensions import db
from app.job_api import NotRetryable, Wave
from app.models import DeviceResult, JobRun, RunStatus, utcnow

logger = logging.getLogger(__name__)

#: settings a job module may read through ``config`` (never keys or URLs)
PUBLIC_SETTINGS = (
    "ROOKERY_INSTANCE",
    "ROOKERY_JOB_TIMEOUT_SECONDS",
    "ROOKERY_JOB_TIMEOUT_MAX_SECONDS",
    "ROOKERY_WORKER_CONCURRENCY",
    "ROOKERY_CONFIG_REDACT_SECRETS",
)


def execute(
    run_id: int,
    *,
    queue_job_id: int | None = None,
    worker_name: str | None = None,
    abort_reason: Callable[[], str | None] = lambda: None,
    eventlog: bool = True,
) -> Outcome | None:
    """Run the next attempt of ``run_id``; None when there was nothing to do.

    ``queue_job_id`` is the queue job that asks (the run must name it; a run_now run
    names none). ``abort_reason`` tells the supervisor when the queue wants the
    attempt stopped: ``"cancelled"`` (an operator) or ``"shutdown"`` (the worker is
    stopping).
    """
    row = lifecycle.claim(run_id, queue_job_id, worker_name, eventlog=eventlog)
    if row is None:
        _nothing_to_do(run_id, queue_job_id)
        return None
    attempt = row.attempt
    try:
        return _attempt(row, attempt, abort_reason, eventlog)
    except Exception as exc:
        # Anything the attempt did not end itself (a secret this worker cannot read,
        # the driver registry, a lost database connection): fenced, like any failure.
        logger.exception("Run %s attempt %s failed outside its units", run_id, attempt)
        return endings.fail(
            run_id,
            attempt,
            RunStatus.FAILED_UNEXPECTED,
            exc,
            eventlog,
            retry=not isinstance(exc, NotRetryable | registry.UnknownJobType),
            reason=_reason(row, exc),
        )


def _reason(row: Any, exc: Exception) -> str | None:
    if isinstance(exc, registry.UnknownJobType):
        return f"job type {row.job_type!r} is not registered in this worker"
    return None


def _nothing_to_do(run_id: int, queue_job_id: int | None) -> None:
    found = db.session.execute(
        select(JobRun.status, JobRun.procrastinate_job_id).where(JobRun.id == run_id)
    ).first()
    db.session.rollback()
    if found is None:
        logger.warning("Run %s no longer exists; nothing to do", run_id)
    elif found.procrastinate_job_id != queue_job_id:
        logger.info(
            "Run %s is %s under another queue entry (%s, not %s); nothing to do",
            run_id, found.status, found.procrastinate_job_id, queue_job_id,
        )  # fmt: skip
    else:
        logger.info("Run %s is already %s; nothing to do", run_id, found.status)


def _attempt(
    row: Any, attempt: int, abort_reason: Callable[[], str | None], eventlog: bool
) -> Outcome | None:
    job_type = registry.current().get(row.job_type)
    work = Attempt(
        run_id=row.id,
        number=attempt,
        job_type=job_type,
        config=_job_config(row),
        eventlog=eventlog,
        control=Control(row.id, attempt, row.timeout_seconds, abort_reason),
    )
    if job_type.targets == "none":
        return _run_global(work)
    return _run_devices(work)


def _job_config(run: Any) -> Mapping[str, Any]:
    """What the job module reads: public settings, params (secrets revealed), the run.

    ``run`` is the claimed row (id, job_name, params, attempt).
    """
    settings = current_app.config
    values: dict[str, Any] = {key: settings[key] for key in PUBLIC_SETTINGS if key in settings}
    values["params"] = MappingProxyType(crypto.reveal_params(run.params or {}))
    values["run_id"] = run.id
    values["job_name"] = run.job_name
    values["attempt"] = run.attempt
    return MappingProxyType(values)


def _supervise(control: Control, futures: list[Future[Any]]) -> None:
    """Wait for the units, or until the control says stop.

    Each unit counts itself done (a callback), so a unit's end costs the same at 10
    devices as at 10,000: ``concurrent.futures.wait`` over the pending set walked every
    pending future at each end (quadratic in the run's size).
    """
    left = len(futures)
    lock = threading.Lock()
    all_done = threading.Event()

    def one_done(_future: Future[Any]) -> None:
        nonlocal left
        with lock:
            left -= 1
            if left == 0:
                all_done.set()

    if not futures:
        return
    for future in futures:
        future.add_done_callback(one_done)
    while not all_done.wait(POLL_SECONDS):
        if control.check():
            return


def _run_global(work: Attempt) -> Outcome | None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    future, unit_thread = units.GLOBAL_UNITS.submit(units.global_unit, app, work)
    _supervise(work.control, [future])
    if not future.done():
        # Stopped while the unit runs: its thread stays with it and leaves the pool.
        units.GLOBAL_UNITS.abandon(unit_thread)
        return endings.interrupt(work, targets=[])
    try:
        ended = future.result()
    except Exception as exc:
        return endings.fail(
            work.run_id,
            work.number,
            RunStatus.FAILED_UNEXPECTED,
            exc,
            work.eventlog,
            retry=not isinstance(exc, NotRetryable),
        )
    if ended is None:
        return None
    status, result = ended
    return Outcome(work.run_id, RunStatus(status), result.message, result.to_dict())


def _run_devices(work: Attempt) -> Outcome | None:
    run_id, attempt, job_type, eventlog = work.run_id, work.number, work.job_type, work.eventlog
    try:
        run = lifecycle.lock_current(run_id, attempt)
        if run is None:
            return None
        targets = units.targets_of(units.load_devices(run))
        max_parallel = units.parallelism(run)
        run.progress_total = len(targets)
        run.progress_done = 0
        # A new attempt starts the devices afresh.
        db.session.execute(DeviceResult.__table__.delete().where(DeviceResult.run_id == run_id))
        units.runner_log(run, f"Dispatching {len(targets)} device(s), {max_parallel} at a time")
        db.session.commit()
    except Exception as exc:
        return endings.fail(
            run_id, attempt, RunStatus.FAILED_DISPATCHER_ERROR, exc, eventlog, retry=True
        )
    if targets and job_type.needs_credentials:
        try:
            resolved = units.resolve(run_id, attempt, targets, eventlog)
        except Exception as exc:
            return endings.fail(
                run_id, attempt, RunStatus.FAILED_CREDENTIAL_RESOLUTION, exc, eventlog, retry=True
            )
        if resolved is None:
            return None
        if not resolved:
            return endings.end_without_devices(
                run_id,
                attempt,
                RunStatus.COMPLETED_NO_CREDENTIALS,
                "No targeted device has credentials.",
                eventlog,
            )
        targets = resolved
    if not targets:
        return endings.end_without_devices(
            run_id,
            attempt,
            RunStatus.COMPLETED_NO_DEVICES,
            "No enabled device matches the targets.",
            eventlog,
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # The breakers of all the run's devices in one statement, not one per device.
    connector = dispatch.make_connector(app, [target.id for target in targets])
    for target in targets:
        target.connector = connector
    pool = units.UnitPool(max_parallel, f"run{run_id}-dev")
    try:
        plan = _waves(work, targets)
        _run_waves(work, app, pool, plan, targets)
    except _Interrupted:
        pool.shutdown(cancel_pending=True)
        return endings.interrupt(work, targets=targets)
    except _PlanFailed as failed:
        pool.shutdown(cancel_pending=True)
        return endings.fail(
            run_id, attempt, RunStatus.FAILED_UNEXPECTED, failed.error, eventlog, retry=False
        )
    except Exception as exc:  # a unit's own errors are results; this is a runner bug
        pool.shutdown(cancel_pending=True)
        return endings.fail(
            run_id, attempt, RunStatus.FAILED_DISPATCHER_ERROR, exc, eventlog, retry=True
        )
    pool.shutdown()
    return endings.complete(work)


class _Interrupted(Exception):
    """The control said stop (cancel, timeout, shutdown, superseded) during a wave."""


class _PlanFailed(Exception):
    """The job module's ``waves`` generator raised: the rollout cannot go on."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _waves(work: Attempt, targets: list[Any]) -> Iterator[Wave]:
    """The job's waves, or one wave of every device."""
    if work.job_type.waves is None:
        return iter([Wave(tuple(t.id for t in targets), "all devices")])
    return work.job_type.waves(work.run_id, targets, work.config, db.session)


def _run_waves(
    work: Attempt, app: Any, pool: units.UnitPool, plan: Iterator[Wave], targets: list[Any]
) -> None:
    """Each wave's units, one wave after the other; the devices no wave took end as
    skipped, with the plan's reason. Raises _Interrupted or _PlanFailed."""
    by_id = {target.id: target for target in targets}
    ran: set[int] = set()
    number = 0
    while True:
        try:
            wave = next(plan)
        except StopIteration as stop:
            db.session.commit()
            left = [t for t in targets if t.id not in ran]
            if left:
                _skip(work, left, str(stop.value or "not in any wave"))
            return
        except Exception as exc:
            db.session.rollback()
            logger.exception("Run %s: the job's waves failed", work.run_id)
            raise _PlanFailed(exc) from exc
        db.session.commit()  # what the plan wrote (a wave's devices marked, its log line)
        number += 1
        chosen = [by_id[i] for i in wave.device_ids if i in by_id]
        if wave.action == "rollback":
            chosen = [t for t in chosen if t.id in ran]
            _add_to_total(work, len(chosen))
        if wave.pause_seconds > 0 and chosen:
            _log(work, f"Pausing {wave.pause_seconds:g} s before {wave.label}")
            if not _pause(work.control, wave.pause_seconds):
                raise _Interrupted
        if not chosen:
            continue
        if work.job_type.waves is not None:  # a job in waves says which one starts
            _log(work, f"{wave.label}: {len(chosen)} device(s)", {"wave": number})
        ran.update(t.id for t in chosen)
        futures = [
            pool.submit(units.device_unit, app, work, target, wave.action) for target in chosen
        ]
        _supervise(work.control, futures)
        if work.control.reason is not None:
            raise _Interrupted
        for future in futures:
            future.result()


def _pause(control: Control, seconds: float) -> bool:
    """Wait ``seconds``; False when the control says stop meanwhile."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if control.check():
            return False
        time.sleep(min(POLL_SECONDS, max(0.0, until - time.monotonic())))
    return control.check() is None


def _log(work: Attempt, message: str, meta: dict[str, Any] | None = None) -> None:
    run = db.session.get(JobRun, work.run_id)
    if run is not None:
        units.runner_log(run, message, meta=meta)
        db.session.commit()


def _add_to_total(work: Attempt, count: int) -> None:
    """A rollback wave visits devices again: the progress bar grows by as many."""
    if count:
        db.session.execute(
            update(JobRun)
            .where(JobRun.id == work.run_id, JobRun.attempt == work.number)
            .values(progress_total=JobRun.progress_total + count)
        )
        db.session.commit()


def _skip(work: Attempt, targets: list[Any], reason: str) -> None:
    """Results for devices no wave took: skipped, with why (they count as done)."""
    now = utcnow()
    run = lifecycle.lock_current(work.run_id, work.number)
    if run is None:
        return
    for target in targets:
        db.session.add(
            DeviceResult(
                run_id=work.run_id,
                device_id=target.id,
                device_name=target.name,
                status="skipped",
                message=f"Not attempted: {reason}",
                started_at=now,
                finished_at=now,
                duration_ms=0,
            )
        )
    run.progress_done += len(targets)
    units.runner_log(run, f"{len(targets)} device(s) not attempted: {reason}", level="warning")
    db.session.commit()
