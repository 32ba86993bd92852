"""How an attempt ends: completed, failed (retried or final), interrupted.

Every ending is written through the state machine (lifecycle.py) under the run's row
lock, only while this attempt is still current. Per-device atomicity also means that
one device's hang, a cancel or the timeout never throws away another device's
finished work: the job's ``finalize`` (for a backup: the git commit) runs for the
devices that finished whenever the run ends, not only when every device did.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import defer

from app import audit, deadlines, events
from app.engine import lifecycle
from app.engine.runner.units import CANCELLED, SHUTDOWN, SUPERSEDED, TIMED_OUT, Attempt
from app.extensions import db
from app.job_api import DeviceTarget
from app.models import DeviceResult, JobRun, RunStatus

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """How an attempt ended."""

    run_id: int
    status: RunStatus
    message: str = ""
    result: dict[str, Any] | None = None
    device_counts: dict[str, int] = field(default_factory=dict)
    #: what made a failed attempt fail (its queue job ends failed; run_now raises it)
    exception: BaseException | None = None


def error_type(status: RunStatus) -> str:
    return {
        RunStatus.FAILED_CREDENTIAL_RESOLUTION: "CREDENTIAL",
        RunStatus.FAILED_DISPATCHER_ERROR: "DISPATCHER",
    }.get(status, "UNEXPECTED")


def fail(
    run_id: int,
    attempt: int,
    status: RunStatus,
    exc: BaseException,
    eventlog: bool,
    *,
    retry: bool,
    reason: str | None = None,
) -> Outcome | None:
    """The attempt failed: the next attempt is scheduled, or ``status`` is final.

    Committed in a fresh transaction; None when the attempt was no longer current (a
    cancel, the timeout or the reconciler ended it first: that ending stands).
    """
    db.session.rollback()
    error = reason or f"{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(exc))
    run = lifecycle.lock_current(run_id, attempt)
    if run is None:
        return None
    lifecycle.retry_or_fail(
        db.session,
        run,
        status,
        error,
        trace=trace,
        retry=retry,
        eventlog=eventlog,
        error_type=error_type(status),
    )
    ended = RunStatus(run.status)
    db.session.commit()
    logger.info("Run %s attempt %s failed (%s): %s", run_id, attempt, ended.value, error)
    return Outcome(run_id, ended, error, exception=exc)


def end_without_devices(
    run_id: int, attempt: int, status: RunStatus, message: str, eventlog: bool
) -> Outcome | None:
    """No device to work on (none matches, or none has credentials)."""
    run = lifecycle.lock_current(run_id, attempt)
    if run is None:
        return None
    result = {"metrics": run.metrics} if status is RunStatus.COMPLETED_NO_CREDENTIALS else None
    lifecycle.end(db.session, run, status, message, result=result, eventlog=eventlog)
    db.session.commit()
    return Outcome(run_id, status, message)


def _device_results(run_id: int) -> list[DeviceResult]:
    # without their outputs (a 10,000-device backup's are hundreds of MB): a finalize
    # that needs them streams them (app.jobs.stored_outputs) or loads one on access
    return list(
        db.session.scalars(
            select(DeviceResult)
            .where(DeviceResult.run_id == run_id)
            .order_by(DeviceResult.id)
            .options(defer(DeviceResult.output))
        )
    )


#: what a finalize may take at least, even when the run's time is (nearly) up
FINALIZE_MIN_SECONDS = 30


def _finalize(work: Attempt, run: JobRun, results: list[DeviceResult]) -> dict[str, Any]:
    """The job's ``finalize`` over the devices' results (in the ending's transaction).

    Bounded: by what is left of the run's timeout, and never less than
    FINALIZE_MIN_SECONDS (after a timeout, the finished devices still get committed).
    """
    if work.job_type.finalize is None:
        return {}
    left = work.control.seconds_left()
    budget = FINALIZE_MIN_SECONDS if left is None else max(FINALIZE_MIN_SECONDS, left)
    with deadlines.time_limit(budget):
        extra = work.job_type.finalize(run.id, results, work.config, db.session)
    return audit.redact(dict(extra)) if isinstance(extra, Mapping) else {}


def complete(work: Attempt) -> Outcome | None:
    """Every device ended: the run's status from their results, after ``finalize``."""
    run_id, attempt, eventlog = work.run_id, work.number, work.eventlog
    run = lifecycle.lock_current(run_id, attempt)
    if run is None:
        return None
    results = _device_results(run_id)
    counts = _count(results)
    ok = counts.get("success", 0)
    if ok == len(results):
        final = RunStatus.COMPLETED_SUCCESS
    elif ok == 0:
        final = RunStatus.COMPLETED_FAILURE
    else:
        final = RunStatus.COMPLETED_PARTIAL_FAILURE
    message = f"{ok} of {len(results)} device(s) succeeded"
    summary: dict[str, Any] = {"devices": len(results), "by_status": counts}
    try:
        extra = _finalize(work, run, results)
    except Exception as exc:
        return fail(run_id, attempt, RunStatus.FAILED_DISPATCHER_ERROR, exc, eventlog, retry=True)
    summary.update(extra)
    if extra.get("message"):
        message = f"{message}; {extra['message']}"
    lifecycle.end(
        db.session,
        run,
        final,
        message,
        result=summary,
        post_data=summary,
        eventlog=eventlog,
    )
    db.session.commit()
    return Outcome(run_id, final, message, summary, counts)


def interrupt(work: Attempt, *, targets: list[DeviceTarget]) -> Outcome | None:
    """Stop the attempt: cancelled, timed out, superseded, or handed back (shutdown)."""
    run_id, attempt, control, eventlog = work.run_id, work.number, work.control, work.eventlog
    closed = control.close_sessions()
    reason = control.reason
    if reason == SUPERSEDED:
        logger.warning(
            "Run %s: attempt %s is no longer current; stopped without writing", run_id, attempt
        )
        return None
    run = lifecycle.lock_current(run_id, attempt)
    if run is None:
        return None
    data: dict[str, Any] = {"devices_in_flight_closed": closed, "attempt": attempt}
    if reason == SHUTDOWN:
        # Not the run's fault: another worker takes it at once, as a fresh attempt
        # (which starts its devices afresh).
        lifecycle.hand_back(
            db.session, run, "the worker is shutting down; handed back to the queue", data
        )
        status = RunStatus(run.status)
        db.session.commit()
        return Outcome(run_id, status, "handed back")
    if targets:
        word = {CANCELLED: "cancelled", TIMED_OUT: "timeout"}.get(reason or "", "skipped")
        rows = [
            {
                "run_id": run_id,
                "device_id": t.id,
                "device_name": t.name,
                "status": word,
                "message": f"Not finished: the run was {word}.",
                "connect_attempts": 0,
            }
            for t in targets
        ]
        db.session.execute(
            insert(DeviceResult)
            .values(rows)
            .on_conflict_do_nothing(constraint="uq_device_results_run_device")
        )
    summary: dict[str, Any] | None = None
    note = ""
    if targets:
        # Keep what succeeded: the devices that finished are committed all the same.
        results = _device_results(run_id)
        done = [r for r in results if r.status == "success"]
        summary = {
            "devices": len(results),
            "by_status": _count(results),
        }
        if done:
            try:
                with db.session.begin_nested():
                    summary.update(_finalize(work, run, done))
            except Exception as exc:
                logger.exception("Run %s: finalize of the finished devices failed", run_id)
                note = f" Finalize of the {len(done)} finished device(s) failed: {exc}"
            else:
                if summary.get("message"):
                    note = f" {len(done)} device(s) finished: {summary['message']}."
    if reason == TIMED_OUT:
        message = f"Timed out after {control.timeout_seconds}s.{note}"
        status, event = RunStatus.TIMEOUT, events.TIMEOUT
        actor = None
    else:
        message = f"Cancelled by {run.cancelled_by or 'an operator'}.{note}"
        status, event = RunStatus.CANCELLED, events.CANCELLED
        actor = run.cancelled_by
    lifecycle.end(
        db.session,
        run,
        status,
        message,
        event=event,
        result=summary,
        actor=actor,
        data=data,
        eventlog=eventlog,
    )
    db.session.commit()
    logger.info("Run %s %s (attempt %s)", run_id, status.value, attempt)
    return Outcome(run_id, status, message, summary)


def _count(results: list[DeviceResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts
