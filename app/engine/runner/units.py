"""Units of work: a global job's one unit, a device job's unit per device, their threads.

Every unit runs in a thread of its own with its own app context, session and
transaction, committed as it ends so results show live. A device's result, progress
and event are one guarded statement: written only while the run is RUNNING this
attempt (the fencing token), so a superseded attempt's units write nothing. The
unit's thread carries the fence (fence.py), so the job module's log lines and
progress are refused too once the attempt is no longer current.
"""

from __future__ import annotations

import logging
import os
import queue as queue_module
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from psycopg.types.json import Jsonb
from sqlalchemy import Select, or_, select

from app import audit, database, dispatch, events, logs, registry
from app.engine import fence, lifecycle
from app.errors import RookeryError
from app.extensions import db
from app.job_api import DeviceTarget, JobLogger
from app.models import (
    MAX_PARALLEL,
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

#: how often the supervisor looks at the clock, the abort flag and the run's row
POLL_SECONDS = 0.25
#: how often the supervisor reads the run's row (cancel requested, attempt current)
ROW_CHECK_SECONDS = 1.0

CANCELLED = "cancelled"
TIMED_OUT = "timeout"
SHUTDOWN = "shutdown"
#: the attempt is no longer the run's current one (the reconciler moved the run on)
SUPERSEDED = "superseded"


@dataclass
class UnitResult:
    """A ``run()`` return value, normalised."""

    success: bool = True
    message: str = ""
    data: dict[str, Any] | None = None
    pre_data: dict[str, Any] | None = None
    post_data: dict[str, Any] | None = None
    #: a device's output (a config, command output), stored on its result row
    output: str | None = None

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
                output=None if value.get("output") is None else str(value.get("output")),
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


class Control:
    """What the supervisor and the units share: the stop flag and open driver sessions."""

    def __init__(
        self,
        run_id: int,
        attempt: int,
        timeout_seconds: int | None,
        abort_reason: Callable[[], str | None],
    ) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self.deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
        self.timeout_seconds = timeout_seconds
        self._abort_reason = abort_reason
        self.stop = threading.Event()
        self.reason: str | None = None
        self._sessions: set[Any] = set()
        self._lock = threading.Lock()
        self._next_row_check = 0.0

    def check(self) -> str | None:
        """Set and return the reason to stop, if there is one now."""
        if self.reason is None:
            reason = self._abort_reason()
            if reason is None and self.deadline is not None and time.monotonic() > self.deadline:
                reason = TIMED_OUT
            if reason is None and time.monotonic() >= self._next_row_check:
                self._next_row_check = time.monotonic() + ROW_CHECK_SECONDS
                reason = _row_reason(self.run_id, self.attempt)
            if reason is not None:
                self.reason = reason
                self.stop.set()
        return self.reason

    def seconds_left(self) -> float | None:
        """Seconds until the run's timeout (None: no timeout)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def track(self, session: Any) -> None:
        with self._lock:
            self._sessions.add(session)

    def untrack(self, session: Any) -> None:
        with self._lock:
            self._sessions.discard(session)

    def close_sessions(self) -> int:
        """Close every driver session still open (their blocked reads then fail)."""
        with self._lock:
            sessions, self._sessions = list(self._sessions), set()
        for session in sessions:
            try:
                getattr(session, "abort", session.close)()
            except Exception:  # closing a half-dead session may fail; it is closed anyway
                logger.debug("closing a device session failed", exc_info=True)
        return len(sessions)


def _row_reason(run_id: int, attempt: int) -> str | None:
    """CANCELLED when a cancel was requested, SUPERSEDED when the attempt is not current.

    A database that does not answer is no reason to stop: the units' own writes fail
    and the reconciler decides once the database is back.
    """
    try:
        row = db.session.execute(
            select(JobRun.status, JobRun.attempt, JobRun.cancel_requested_at).where(
                JobRun.id == run_id
            )
        ).first()
        db.session.rollback()  # end the read: the supervisor holds no transaction open
    except Exception as exc:
        db.session.rollback()
        logger.warning("Run %s: could not read its row (%s); carrying on", run_id, exc)
        return None
    if row is None or row.status != "RUNNING" or row.attempt != attempt:
        return SUPERSEDED
    return CANCELLED if row.cancel_requested_at is not None else None


@dataclass
class Attempt:
    """One attempt in progress: what its supervisor and its units share."""

    run_id: int
    number: int
    job_type: registry.JobType
    config: Mapping[str, Any]
    eventlog: bool
    control: Control


class UnitPool:
    """A bounded pool of daemon threads for one attempt's units.

    Unlike ThreadPoolExecutor, whose threads the interpreter joins at exit, a unit
    stuck on a hung device cannot keep a stopping worker process alive: the attempt
    is already ended and handed back when the supervisor gives up on it.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._work: queue_module.SimpleQueue[Any] = queue_module.SimpleQueue()
        self._futures: list[Future[Any]] = []
        self._size = max_workers
        for index in range(max_workers):
            threading.Thread(target=self._serve, name=f"{name}-{index}", daemon=True).start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._futures.append(future)
        self._work.put((future, fn, args))
        return future

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self, *, cancel_pending: bool = False) -> None:
        """Let the threads end once the queue is drained (cancelling what has not started)."""
        if cancel_pending:
            for future in self._futures:
                future.cancel()
        for _ in range(self._size):
            self._work.put(None)


class _UnitThread:
    """One reusable daemon thread of ``UnitThreads``: one unit at a time, then back idle."""

    def __init__(self, pool: UnitThreads, name: str) -> None:
        self._pool = pool
        self._work: queue_module.SimpleQueue[Any] = queue_module.SimpleQueue()
        #: set by the supervisor when it gave up on this thread's unit (see abandon)
        self.abandoned = False
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def give(self, future: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._work.put((future, fn, args))

    def _serve(self) -> None:
        while True:
            try:
                item = self._work.get(timeout=self._pool.idle_seconds)
            except queue_module.Empty:
                if self._pool._retire(self):
                    return
                continue  # handed work at the moment it timed out: it is on its way
            future, fn, args = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            del item, future, fn, args  # hold nothing of the last unit while idle
            if not self._pool._checkin(self):
                return


class UnitThreads:
    """Reusable threads for global units, one pool per process (the worker's).

    A thread per run cost 1-2 ms under load; these threads are kept idle between
    runs instead. The guarantee of UnitPool is unchanged: a unit the supervisor gives
    up on (cancelled, timed out, worker stopping) keeps its thread, which is marked
    abandoned and never comes back to the pool (it ends when the unit ends, or with
    the process: daemon threads); the next run gets another thread, so the worker's
    slot is free at once. Idle threads end after ``idle_seconds``.
    """

    def __init__(self, name: str, idle_seconds: float = 60.0) -> None:
        self.name = name
        self.idle_seconds = idle_seconds
        self._idle: list[_UnitThread] = []
        self._lock = threading.Lock()
        self._count = 0
        # A forked child (gunicorn, multiprocessing) inherits the list, not the threads.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._idle = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> tuple[Future[Any], _UnitThread]:
        """Run ``fn(*args)`` on an idle thread (or a new one); its future and thread."""
        with self._lock:
            unit_thread = self._idle.pop() if self._idle else None
            self._count += 1
            number = self._count
        if unit_thread is None:
            unit_thread = _UnitThread(self, f"{self.name}-{number}")
        future: Future[Any] = Future()
        unit_thread.give(future, fn, args)
        return future, unit_thread

    def abandon(self, unit_thread: _UnitThread) -> None:
        """The supervisor gave up on this thread's unit: it must not serve another."""
        with self._lock:
            if unit_thread not in self._idle:  # else it finished meanwhile and is clean
                unit_thread.abandoned = True

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)

    def _checkin(self, unit_thread: _UnitThread) -> bool:
        with self._lock:
            if unit_thread.abandoned:
                return False
            self._idle.append(unit_thread)
            return True

    def _retire(self, unit_thread: _UnitThread) -> bool:
        """Leave the pool after idling; False when it was just handed work."""
        with self._lock:
            if unit_thread in self._idle:
                self._idle.remove(unit_thread)
                return True
            return False


def runner_log(
    run: JobRun,
    message: str,
    *,
    level: str = "info",
    source: str = "worker.runner",
    meta: dict[str, Any] | None = None,
) -> None:
    """A log line of the runner about ``run`` (in the caller's transaction)."""
    logs.write(
        level=level,
        log_type="runner",
        source=source,
        run_id=run.id,
        job_id=run.job_id,
        job_type=run.job_type,
        message=message,
        meta=meta,
    )


# ----------------------------------------------------------------------- global


#: the worker process's threads for global units (see UnitThreads)
GLOBAL_UNITS = UnitThreads("global-unit")


def global_unit(app: Flask, work: Attempt) -> tuple[str, UnitResult] | None:
    """The one unit of a global job; its final status and result, or None when the
    attempt was superseded, cancelled or timed out meanwhile (its writes roll back)."""
    with app.app_context(), fence.holding(work.run_id, work.number):
        try:
            try:
                value = work.job_type.run(None, work.run_id, work.config, db.session)
            except Exception:
                db.session.rollback()
                raise
            result = UnitResult.from_value(value)
            status = "COMPLETED_SUCCESS" if result.success else "COMPLETED_FAILURE"
            values = {
                "message": result.message,
                "result": result.to_dict(),
                "pre_data": result.pre_data,
                "post_data": result.post_data if result.post_data is not None else result.data,
                "eventlog": work.eventlog,
            }
            # The unit's own writes and the final status commit together — unless the
            # run was cancelled or timed out meanwhile: then the unit is rolled back.
            if not lifecycle.finish_global(
                db.session, work.run_id, work.number, RunStatus(status), values
            ):
                db.session.rollback()
                return None
            db.session.commit()
            return status, result
        finally:
            db.session.remove()


# ---------------------------------------------------------------------- devices


def target_query(run: JobRun) -> Select[tuple[Device]] | None:
    """The enabled devices a run targets, by name: the job's tags and devices, or the
    run's ids; None when it targets none (a run of a deleted job)."""
    query = select(Device).where(Device.enabled.is_(True)).order_by(Device.name)
    if run.device_ids is not None:
        return query.where(Device.id.in_(run.device_ids))
    if run.job_id is None:
        return None
    by_tag = (
        select(device_tags.c.device_id)
        .join(job_target_tags, job_target_tags.c.tag_id == device_tags.c.tag_id)
        .where(job_target_tags.c.job_id == run.job_id)
    )
    by_id = select(job_target_devices.c.device_id).where(job_target_devices.c.job_id == run.job_id)
    return query.where(or_(Device.id.in_(by_tag), Device.id.in_(by_id)))


def load_devices(run: JobRun) -> list[Device]:
    """The enabled devices a run targets (see ``target_query``)."""
    query = target_query(run)
    return [] if query is None else list(db.session.scalars(query))


def targets_of(devices: list[Device]) -> list[DeviceTarget]:
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
            host_key=d.pinned_host_key,
            host_key_approved=d.host_key_approved,
        )
        for d in devices
    ]


def resolve(
    run_id: int, attempt: int, targets: list[DeviceTarget], eventlog: bool
) -> list[DeviceTarget] | None:
    """Give each target its credentials; devices without any get a failed result."""
    run = db.session.get(JobRun, run_id)
    assert run is not None
    runner_log(
        run,
        f"Resolving credentials for {len(targets)} device(s)",
    )
    found = dispatch.resolve_credentials(db.session, [t.id for t in targets], run.job_id)
    for target in targets:
        target.credentials = found.get(target.id, ())
    ready = [t for t in targets if t.credentials]
    missing = [t for t in targets if not t.credentials]
    metrics = {
        "resolved": len(ready),
        "total": len(targets),
        "percentage": round(100.0 * len(ready) / len(targets), 1),
    }
    run = lifecycle.lock_current(run_id, attempt)
    if run is None:
        return None
    run.metrics = metrics
    now = utcnow()
    reasons = dispatch.missing_credentials_reasons(db.session, [t.id for t in missing], run.job_id)
    for target in missing:
        db.session.add(
            DeviceResult(
                run_id=run_id,
                device_id=target.id,
                device_name=target.name,
                status="no_credentials",
                message=reasons[target.id],
                started_at=now,
                finished_at=now,
                duration_ms=0,
            )
        )
    run.progress_done += len(missing)
    runner_log(
        run,
        f"Handing off {len(ready)} device(s) with credentials to dispatcher "
        f"({metrics['resolved']}/{metrics['total']}, {metrics['percentage']}%)",
        level="info" if not missing else "warning",
        meta=metrics,
    )
    db.session.commit()
    return ready


def parallelism(run: JobRun) -> int:
    limit = current_app.config["ROOKERY_WORKER_CONCURRENCY"]
    job = db.session.get(Job, run.job_id) if run.job_id else None
    if job is not None and job.max_parallel:
        return max(1, min(job.max_parallel, MAX_PARALLEL))
    return max(1, min(limit * 2, MAX_PARALLEL))


def device_unit(app: Flask, work: Attempt, target: DeviceTarget, action: str = "run") -> str:
    """One device in its own app context, session and transaction; returns its status.
    ``action`` is the wave's: ``run`` (the job's run) or ``rollback`` (its rollback)."""
    control = work.control
    with app.app_context(), fence.holding(work.run_id, work.number):
        try:
            if control.stop.is_set():
                return "skipped"  # the supervisor writes the results of unstarted devices
            slots = dispatch.device_slots(app.config["ROOKERY_WORKER_DEVICE_LIMIT"])
            while not slots.acquire(timeout=POLL_SECONDS):
                if control.stop.is_set():
                    return "skipped"
            try:
                return _device_work(work, target, action)
            finally:
                slots.release()
                # A login no result statement counted (an interrupted unit, a failed
                # write) is counted on its own.
                dispatch.record_logins(_pending_login(target))
        finally:
            db.session.remove()


def _pending_login(target: DeviceTarget, *, take: bool = True) -> tuple[int, int] | None:
    """The device's successful login not counted yet (see dispatch.Connector)."""
    connector = target.connector
    if not isinstance(connector, dispatch.Connector):
        return None
    return connector.take_login(target.id) if take else connector.peek_login(target.id)


def _device_work(work: Attempt, target: DeviceTarget, action: str = "run") -> str:
    run_id, job_type, control = work.run_id, work.job_type, work.control
    unit = job_type.rollback if action == "rollback" else job_type.run
    assert unit is not None, f"{job_type.job_type} has no {action}()"
    started = utcnow()
    clock = time.monotonic()
    target.on_session_open = control.track
    target.on_session_close = control.untrack
    # the run page shows the device as working from this line on (and the log says when)
    JobLogger(run_id, job_type.job_type, device_id=target.id).debug(
        f"{target.name}: {'rollback ' if action == 'rollback' else ''}started "
        f"({target.host}:{target.port})"
    )
    try:
        result = UnitResult.from_value(unit(target, run_id, work.config, db.session))
    except Exception as exc:
        db.session.rollback()
        if control.stop.is_set():
            return "interrupted"
        status = dispatch.result_status(exc)
        # Rookery's own errors are written for people; others get their type named.
        message = str(exc) if isinstance(exc, RookeryError) else f"{type(exc).__name__}: {exc}"
        logs.write(
            level="error",
            log_type="job",
            source=f"worker.job.{job_type.job_type}",
            run_id=run_id,
            job_type=job_type.job_type,
            device_id=target.id,
            message=f"{target.name}: {message}",
            meta={"error_type": "DEVICE", "exception": type(exc).__name__, "status": status},
        )
        db.session.commit()
        return _device_result(work, target, status, message, started, clock)
    return _device_result(
        work,
        target,
        "success" if result.success else "failed",
        result.message,
        started,
        clock,
        data=result.data,
        output=result.output,
    )


def _device_result(
    work: Attempt,
    target: DeviceTarget,
    status: str,
    message: str,
    started: datetime,
    clock: float,
    *,
    data: dict[str, Any] | None = None,
    output: str | None = None,
) -> str:
    """Write the device's result and progress with the unit's writes, then commit.

    One statement (see _DEVICE_RESULT_SQL), so the run's row lock, which every device
    of the run takes in turn, is held for one round trip and the commit, not for a
    locking read, three ORM writes and the commit. The device's successful login is
    counted in it too (one transaction fewer per device).
    """
    login = _pending_login(target, take=False)
    params = {
        "run_id": work.run_id,
        "attempt": work.number,
        "device_id": target.id,
        "device_name": target.name,
        "status": status,
        "message": message[:10000],
        "data": Jsonb(data),
        "output": output,
        "credential_name": target.used_credential,
        "connect_attempts": target.connect_attempts,
        "started_at": started,
        "finished_at": utcnow(),
        "duration_ms": int((time.monotonic() - clock) * 1000),
        "event_message": f"{target.name}: {status}",
        "eventlog": events.enabled(work.eventlog),
        "credential_id": login[0] if login else None,
        "logins": login[1] if login else 0,
    }
    if db.session().in_transaction():  # the job module wrote (or read): commit with it
        row = db.session.connection().exec_driver_sql(_DEVICE_RESULT_SQL, params).first()
        if row is None:  # cancelled or timed out meanwhile: the unit's writes roll back
            db.session.rollback()
            return "interrupted"  # _device_unit counts the login on its own
        db.session.commit()
    elif database.autocommit_row(_DEVICE_RESULT_SQL, params) is None:
        # Nothing else to commit (config_backup): the statement is its own transaction.
        return "interrupted"
    _pending_login(target)  # counted now
    return status


#: A device's result, the run's progress, the ``job.progress`` event and the count of
#: the device's successful login, in one round trip (psycopg's parameter style: it also
#: runs straight on the driver's connection). The UPDATE takes the row lock SELECT ...
#: FOR NO KEY UPDATE took and re-checks, once it holds it, that the run is still
#: RUNNING this attempt; when it is not, the statement writes nothing and returns no
#: row. The credential's row is locked after the run's (``c`` reads ``r``), always in
#: that order, and one credential at most: no lock cycle with other devices. A device
#: that a rollback wave visits again (see job_api.Wave) gets its result replaced.
_DEVICE_RESULT_SQL = f"""
    WITH r AS (
        UPDATE job_runs SET progress_done = progress_done + 1
        WHERE id = %(run_id)s AND status = 'RUNNING' AND attempt = %(attempt)s
        RETURNING id, job_id, status, progress_done, progress_total, signal_id
    ), d AS (
        INSERT INTO device_results (run_id, device_id, device_name, status, message, data,
            output, credential_name, connect_attempts, started_at, finished_at, duration_ms)
        SELECT r.id, %(device_id)s, %(device_name)s, %(status)s, %(message)s, %(data)s,
            %(output)s, %(credential_name)s, %(connect_attempts)s, %(started_at)s,
            %(finished_at)s, %(duration_ms)s
        FROM r
        ON CONFLICT ON CONSTRAINT uq_device_results_run_device DO UPDATE SET
            status = EXCLUDED.status, message = EXCLUDED.message, data = EXCLUDED.data,
            output = COALESCE(EXCLUDED.output, device_results.output),
            finished_at = EXCLUDED.finished_at, duration_ms = EXCLUDED.duration_ms
    ), e AS (
        INSERT INTO events (at, type, status, message, run_id, job_id, data, signal_id)
        SELECT %(finished_at)s, '{events.PROGRESS}', r.status, %(event_message)s, r.id,
            r.job_id,
            jsonb_build_object('device_id', %(device_id)s::bigint,
                'device', %(device_name)s::text, 'status', %(status)s::text,
                'done', r.progress_done, 'total', r.progress_total),
            r.signal_id
        FROM r WHERE %(eventlog)s
    ), c AS (
        UPDATE credentials SET success_count = success_count + %(logins)s,
            last_used_at = now()
        WHERE id = %(credential_id)s AND EXISTS (SELECT 1 FROM r)
    )
    SELECT progress_done FROM r
"""
