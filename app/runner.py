"""The atomic runner: one attempt of one run, all-or-nothing per unit of work.

A global job (``targets: "none"``) is one unit; a device job has one unit per device,
each in its own thread, app context and session, committed as that device ends so
results show live. A unit that raises is rolled back; its failure (status, error,
traceback, event) is committed in a fresh short transaction and the exception is
re-raised, so procrastinate's retry strategy sees it. Between attempts the run is
SCHEDULED with a ``job.retried`` event; only the last attempt's failure is final.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from flask import Flask, current_app
from sqlalchemy import or_, select, update

from app import audit, crypto, events, logs, registry
from app.extensions import db
from app.job_api import DeviceTarget, NotRetryable
from app.models import (
    Device,
    DeviceResult,
    Job,
    JobRun,
    RunStatus,
    Tag,
    device_tags,
    job_target_devices,
    job_target_tags,
    utcnow,
)

logger = logging.getLogger(__name__)

#: settings a job module may read through ``config`` (never keys or URLs)
PUBLIC_SETTINGS = (
    "ROOKERY_INSTANCE",
    "ROOKERY_JOB_TIMEOUT_SECONDS",
    "ROOKERY_JOB_TIMEOUT_MAX_SECONDS",
    "ROOKERY_WORKER_CONCURRENCY",
)


class RetryScheduled(Exception):
    """The attempt failed and the run will be tried again at ``retry_at``."""

    def __init__(self, run_id: int, retry_at: datetime) -> None:
        super().__init__(f"run {run_id} retries at {retry_at.isoformat()}")
        self.run_id = run_id
        self.retry_at = retry_at


@dataclass
class UnitResult:
    """A ``run()`` return value, normalised."""

    success: bool = True
    message: str = ""
    data: dict[str, Any] | None = None
    pre_data: dict[str, Any] | None = None
    post_data: dict[str, Any] | None = None

    @classmethod
    def from_value(cls, value: Any) -> UnitResult:
        if value is None:
            return cls()
        if isinstance(value, str):
            return cls(message=value)
        if isinstance(value, Mapping):
            return cls(
                success=bool(value.get("success", True)),
                message=str(value.get("message") or value.get("details") or ""),
                data=_jsonable(value.get("data")),
                pre_data=_jsonable(value.get("pre_data")),
                post_data=_jsonable(value.get("post_data")),
            )
        return cls(message=str(value))

    def to_dict(self) -> dict[str, Any]:
        return {"success": self.success, "message": self.message, "data": self.data}


def _jsonable(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return audit.redact(dict(value))
    return {"value": audit.redact(value) if isinstance(value, list) else str(value)}


@dataclass
class Outcome:
    """How an attempt ended."""

    run_id: int
    status: RunStatus
    message: str = ""
    result: dict[str, Any] | None = None
    device_counts: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------ entry


def execute(
    run_id: int,
    *,
    attempt: int,
    worker_name: str | None = None,
    should_abort: Callable[[], bool] = lambda: False,
    eventlog: bool = True,
) -> Outcome | None:
    """Run one attempt of ``run_id``; None when there was nothing to do (ended already)."""
    run = _begin(run_id, attempt, worker_name, eventlog)
    if run is None:
        return None
    try:
        job_type = registry.current().get(run.job_type)
    except registry.UnknownJobType as exc:
        _fail(
            run_id,
            attempt,
            RunStatus.FAILED_UNEXPECTED,
            exc,
            eventlog,
            retry=False,
            reason=f"job type {run.job_type!r} is not registered in this worker",
        )
        raise
    config = _job_config(run)
    if job_type.targets == "none":
        return _run_global(run_id, attempt, job_type, config, eventlog)
    return _run_devices(run_id, attempt, job_type, config, eventlog, should_abort)


def _begin(run_id: int, attempt: int, worker_name: str | None, eventlog: bool) -> JobRun | None:
    run = db.session.get(JobRun, run_id, with_for_update=True, populate_existing=True)
    if run is None:
        logger.warning("Run %s no longer exists; nothing to do", run_id)
        db.session.rollback()
        return None
    if run.run_status.is_final:
        logger.info("Run %s is already %s; nothing to do", run_id, run.status)
        db.session.rollback()
        return None
    run.status = RunStatus.RUNNING.value
    run.attempt = attempt
    run.started_at = run.started_at or utcnow()
    run.scheduled_at = None
    run.worker_name = worker_name
    run.progress_done = 0
    events.record(
        db.session,
        run,
        events.STARTED,
        f"attempt {attempt} of {run.max_attempts}" + (f" on {worker_name}" if worker_name else ""),
        eventlog=eventlog,
        data={"attempt": attempt, "worker": worker_name},
    )
    db.session.commit()
    return run


def _job_config(run: JobRun) -> Mapping[str, Any]:
    settings = current_app.config
    values: dict[str, Any] = {key: settings[key] for key in PUBLIC_SETTINGS if key in settings}
    values["params"] = MappingProxyType(crypto.reveal_params(run.params or {}))
    values["run_id"] = run.id
    values["job_name"] = run.job_name
    values["attempt"] = run.attempt
    return MappingProxyType(values)


# ----------------------------------------------------------------------- global


def _run_global(
    run_id: int,
    attempt: int,
    job_type: registry.JobType,
    config: Mapping[str, Any],
    eventlog: bool,
) -> Outcome:
    try:
        result = UnitResult.from_value(job_type.run(None, run_id, config, db.session))
    except Exception as exc:
        db.session.rollback()
        _fail(
            run_id,
            attempt,
            RunStatus.FAILED_UNEXPECTED,
            exc,
            eventlog,
            retry=not isinstance(exc, NotRetryable),
        )
        raise
    # The unit's own writes and the final status commit together.
    run = db.session.get(JobRun, run_id, with_for_update=True, populate_existing=True)
    assert run is not None
    status = RunStatus.COMPLETED_SUCCESS if result.success else RunStatus.COMPLETED_FAILURE
    if run.progress_total == 0:
        run.progress_total = 1
    run.progress_done = run.progress_total
    _finish(run, status, result.message, result.to_dict())
    events.record(
        db.session,
        run,
        events.COMPLETED,
        result.message or status.value,
        eventlog=eventlog,
        result=result.to_dict(),
        pre_data=result.pre_data,
        post_data=result.post_data if result.post_data is not None else result.data,
    )
    db.session.commit()
    return Outcome(run_id, status, result.message, result.to_dict())


# ---------------------------------------------------------------------- devices


def load_devices(run: JobRun) -> list[Device]:
    """The enabled devices a run targets: the job's tags and devices, or the run's ids."""
    query = select(Device).where(Device.enabled.is_(True)).order_by(Device.name)
    if run.device_ids is not None:
        return list(db.session.scalars(query.where(Device.id.in_(run.device_ids))))
    if run.job_id is None:
        return []
    by_tag = (
        select(device_tags.c.device_id)
        .join(job_target_tags, job_target_tags.c.tag_id == device_tags.c.tag_id)
        .where(job_target_tags.c.job_id == run.job_id)
    )
    by_id = select(job_target_devices.c.device_id).where(job_target_devices.c.job_id == run.job_id)
    return list(db.session.scalars(query.where(or_(Device.id.in_(by_tag), Device.id.in_(by_id)))))


def _targets(devices: list[Device]) -> list[DeviceTarget]:
    tag_rows = db.session.execute(
        select(device_tags.c.device_id, Tag.name)
        .join(Tag, Tag.id == device_tags.c.tag_id)
        .where(device_tags.c.device_id.in_([d.id for d in devices]))
    ).all()
    tags: dict[int, list[str]] = {}
    for device_id, name in tag_rows:
        tags.setdefault(device_id, []).append(name)
    return [
        DeviceTarget(
            id=d.id,
            name=d.name,
            host=d.host,
            port=d.port,
            platform=d.platform,
            driver=d.driver,
            tags=tuple(sorted(tags.get(d.id, []))),
        )
        for d in devices
    ]


def _run_devices(
    run_id: int,
    attempt: int,
    job_type: registry.JobType,
    config: Mapping[str, Any],
    eventlog: bool,
    should_abort: Callable[[], bool],
) -> Outcome:
    try:
        run = db.session.get(JobRun, run_id)
        assert run is not None
        devices = load_devices(run)
        targets = _targets(devices)
        max_parallel = _parallelism(run)
        run.progress_total = len(targets)
        run.progress_done = 0
        # A retry starts the devices afresh.
        db.session.execute(DeviceResult.__table__.delete().where(DeviceResult.run_id == run_id))
        logs.write(
            level="info",
            log_type="runner",
            source="worker.runner",
            run_id=run_id,
            job_id=run.job_id,
            job_type=run.job_type,
            message=f"Dispatching {len(targets)} device(s), {max_parallel} at a time",
        )
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        _fail(run_id, attempt, RunStatus.FAILED_DISPATCHER_ERROR, exc, eventlog, retry=True)
        raise
    if not targets:
        run = db.session.get(JobRun, run_id, with_for_update=True, populate_existing=True)
        assert run is not None
        _finish(run, RunStatus.COMPLETED_NO_DEVICES, "No enabled device matches the targets.")
        events.record(db.session, run, events.COMPLETED, run.message or "", eventlog=eventlog)
        db.session.commit()
        return Outcome(run_id, RunStatus.COMPLETED_NO_DEVICES, run.message or "")

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        with ThreadPoolExecutor(
            max_workers=max_parallel, thread_name_prefix=f"run{run_id}-dev"
        ) as pool:
            futures = [
                pool.submit(
                    _device_unit, app, run_id, job_type, config, target, eventlog, should_abort
                )
                for target in targets
            ]
            statuses = [f.result() for f in futures]
    except Exception as exc:
        db.session.rollback()
        _fail(run_id, attempt, RunStatus.FAILED_DISPATCHER_ERROR, exc, eventlog, retry=True)
        raise
    counts: dict[str, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    ok = counts.get("success", 0)
    if ok == len(statuses):
        final = RunStatus.COMPLETED_SUCCESS
    elif ok == 0:
        final = RunStatus.COMPLETED_FAILURE
    else:
        final = RunStatus.COMPLETED_PARTIAL_FAILURE
    message = f"{ok} of {len(statuses)} device(s) succeeded"
    run = db.session.get(JobRun, run_id, with_for_update=True, populate_existing=True)
    assert run is not None
    summary = {"devices": len(statuses), "by_status": counts}
    _finish(run, final, message, summary)
    events.record(
        db.session,
        run,
        events.COMPLETED,
        message,
        eventlog=eventlog,
        result=summary,
        post_data=summary,
    )
    db.session.commit()
    return Outcome(run_id, final, message, summary, counts)


def _parallelism(run: JobRun) -> int:
    limit = current_app.config["ROOKERY_WORKER_CONCURRENCY"]
    job = db.session.get(Job, run.job_id) if run.job_id else None
    if job is not None and job.max_parallel:
        return max(1, min(job.max_parallel, 64))
    return max(1, min(limit * 2, 64))


def _device_unit(
    app: Flask,
    run_id: int,
    job_type: registry.JobType,
    config: Mapping[str, Any],
    target: DeviceTarget,
    eventlog: bool,
    should_abort: Callable[[], bool],
) -> str:
    """One device in its own app context, session and transaction; returns its status."""
    with app.app_context():
        try:
            started = utcnow()
            clock = time.monotonic()
            if should_abort():
                return _device_result(
                    run_id,
                    target,
                    "skipped",
                    "Run stopped before this device started.",
                    started,
                    clock,
                    eventlog,
                )
            try:
                result = UnitResult.from_value(job_type.run(target, run_id, config, db.session))
            except Exception as exc:
                db.session.rollback()
                logs.write(
                    level="error",
                    log_type="job",
                    source=f"worker.job.{job_type.job_type}",
                    run_id=run_id,
                    job_type=job_type.job_type,
                    device_id=target.id,
                    message=f"{target.name}: {type(exc).__name__}: {exc}",
                    meta={"error_type": "DEVICE", "exception": type(exc).__name__},
                )
                return _device_result(
                    run_id,
                    target,
                    "failed",
                    f"{type(exc).__name__}: {exc}",
                    started,
                    clock,
                    eventlog,
                )
            return _device_result(
                run_id,
                target,
                "success" if result.success else "failed",
                result.message,
                started,
                clock,
                eventlog,
                data=result.data,
            )
        finally:
            db.session.remove()


def _device_result(
    run_id: int,
    target: DeviceTarget,
    status: str,
    message: str,
    started: datetime,
    clock: float,
    eventlog: bool,
    *,
    data: dict[str, Any] | None = None,
) -> str:
    """Write the device's result and progress in the unit's transaction and commit."""
    db.session.add(
        DeviceResult(
            run_id=run_id,
            device_id=target.id,
            device_name=target.name,
            status=status,
            message=message[:10000],
            data=data,
            started_at=started,
            finished_at=utcnow(),
            duration_ms=int((time.monotonic() - clock) * 1000),
        )
    )
    db.session.execute(
        update(JobRun).where(JobRun.id == run_id).values(progress_done=JobRun.progress_done + 1)
    )
    run = db.session.get(JobRun, run_id)
    assert run is not None
    db.session.refresh(run, ["progress_done", "progress_total"])
    events.record(
        db.session,
        run,
        events.PROGRESS,
        f"{target.name}: {status}",
        eventlog=eventlog,
        data={
            "device_id": target.id,
            "device": target.name,
            "status": status,
            "done": run.progress_done,
            "total": run.progress_total,
        },
    )
    db.session.commit()
    return status


# ------------------------------------------------------------------------ endings


def _finish(
    run: JobRun, status: RunStatus, message: str, result: dict[str, Any] | None = None
) -> None:
    run.status = status.value
    run.message = message
    run.result = result
    run.finished_at = utcnow()
    if run.started_at is not None:
        run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)


def backoff_delay(run: JobRun, attempt: int) -> int:
    """Seconds before attempt ``attempt + 1``: base * 2^(attempt-1), capped."""
    return min(run.retry_delay_seconds * 2 ** max(0, attempt - 1), run.retry_max_delay_seconds)


def _fail(
    run_id: int,
    attempt: int,
    status: RunStatus,
    exc: BaseException,
    eventlog: bool,
    *,
    retry: bool,
    reason: str | None = None,
) -> None:
    """Commit a failed attempt in a fresh transaction; raise RetryScheduled to retry."""
    error = reason or f"{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(exc))
    run = db.session.get(JobRun, run_id, with_for_update=True, populate_existing=True)
    if run is None:
        db.session.rollback()
        return
    if run.run_status.is_final:  # cancelled meanwhile: that word is final
        db.session.rollback()
        return
    run.error = error
    run.error_traceback = trace
    logs.write(
        level="error",
        log_type="runner",
        source="worker.runner",
        run_id=run_id,
        job_id=run.job_id,
        job_type=run.job_type,
        message=f"Attempt {attempt} failed: {error}",
        meta={"error_type": _error_type(status), "attempt": attempt},
    )
    if retry and attempt < run.max_attempts:
        delay = backoff_delay(run, attempt)
        retry_at = utcnow() + timedelta(seconds=delay)
        run.status = RunStatus.SCHEDULED.value
        run.scheduled_at = retry_at
        events.record(
            db.session,
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
        db.session.commit()
        raise RetryScheduled(run_id, retry_at) from exc
    _finish(run, status, error)
    events.record(
        db.session,
        run,
        events.FAILED,
        error,
        eventlog=eventlog,
        exception=trace,
        data={"attempt": attempt, "error_type": _error_type(status)},
    )
    db.session.commit()


def _error_type(status: RunStatus) -> str:
    return {
        RunStatus.FAILED_CREDENTIAL_RESOLUTION: "CREDENTIAL",
        RunStatus.FAILED_DISPATCHER_ERROR: "DISPATCHER",
    }.get(status, "UNEXPECTED")
