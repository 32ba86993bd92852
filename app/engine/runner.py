"""The atomic runner: one attempt of one run, all-or-nothing per unit of work.

A global job (``targets: "none"``) is one unit; a device job has one unit per device.
Every unit runs in a thread of its own with its own app context, session and
transaction, committed as it ends so results show live. The runner's own thread
supervises them: it stops the attempt when the run is cancelled, when its timeout
passes, or when the worker shuts down — devices not started are skipped, driver
sessions in flight are closed, and the worker's slot is free again at once.

A unit that raises is rolled back; its failure (status, error, traceback, event) is
committed in a fresh short transaction and the exception is re-raised, so
procrastinate's retry strategy sees it. Between attempts the run is SCHEDULED with a
``job.retried`` event; only the last attempt's failure is final. Every final status
is written under the run's row lock, only while the run is still RUNNING this
attempt, together with releasing (or cancelling) the runs that wait for it.
"""

from __future__ import annotations

import logging
import os
import queue as queue_module
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from flask import Flask, current_app
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import or_, select, text
from sqlalchemy.dialects.postgresql import insert

from app import audit, crypto, database, dispatch, events, logs, registry, webhooks
from app.engine import dependencies
from app.errors import RookeryError
from app.extensions import db
from app.job_api import DeviceTarget, NotRetryable
from app.models import (
    ACTIVE_STATUSES,
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
    "ROOKERY_CONFIG_REDACT_SECRETS",
)

#: how often the supervisor looks at the clock, the abort flag and the cancel column
POLL_SECONDS = 0.25
CANCEL_CHECK_SECONDS = 1.0

CANCELLED = "cancelled"
TIMED_OUT = "timeout"
SHUTDOWN = "shutdown"


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


@dataclass
class Outcome:
    """How an attempt ended."""

    run_id: int
    status: RunStatus
    message: str = ""
    result: dict[str, Any] | None = None
    device_counts: dict[str, int] = field(default_factory=dict)


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
        self._next_cancel_check = 0.0

    def check(self) -> str | None:
        """Set and return the reason to stop, if there is one now."""
        if self.reason is None:
            reason = self._abort_reason()
            if reason is None and self.deadline is not None and time.monotonic() > self.deadline:
                reason = TIMED_OUT
            if reason is None and time.monotonic() >= self._next_cancel_check:
                self._next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
                reason = CANCELLED if _cancel_requested(self.run_id) else None
            if reason is not None:
                self.reason = reason
                self.stop.set()
        return self.reason

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


#: the worker process's threads for global units (see UnitThreads)
GLOBAL_UNITS = UnitThreads("global-unit")


def _cancel_requested(run_id: int) -> bool:
    value = db.session.execute(
        text("SELECT cancel_requested_at IS NOT NULL FROM job_runs WHERE id = :id"),
        {"id": run_id},
    ).scalar()
    db.session.rollback()  # end the read: the supervisor holds no transaction open
    return bool(value)


# ------------------------------------------------------------------------ entry


def execute(
    run_id: int,
    *,
    attempt: int,
    worker_name: str | None = None,
    abort_reason: Callable[[], str | None] = lambda: None,
    eventlog: bool = True,
) -> Outcome | None:
    """Run one attempt of ``run_id``; None when there was nothing to do (ended already).

    ``abort_reason`` tells the supervisor when the queue wants the attempt stopped:
    ``"cancelled"`` (an operator) or ``"shutdown"`` (the worker is stopping).
    """
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
    control = Control(run_id, attempt, run.timeout_seconds, abort_reason)
    config = _job_config(run)
    if job_type.targets == "none":
        return _run_global(run_id, attempt, job_type, config, eventlog, control)
    return _run_devices(run_id, attempt, job_type, config, eventlog, control)


def _begin(run_id: int, attempt: int, worker_name: str | None, eventlog: bool) -> Any:
    """Mark the run RUNNING with its ``job.started`` event (committed); return its row.

    One statement, in autocommit (it is its own transaction: one round trip): the
    UPDATE takes the same row lock as SELECT ... FOR NO KEY UPDATE and re-checks the
    status once it holds it, and the event is inserted from the updated row in a CTE.
    None when the run is gone or already ended.
    """
    now = utcnow()
    with database.autocommit(db.engine) as connection:
        cursor = connection.cursor(row_factory=namedtuple_row)
        row = cursor.execute(
            _BEGIN_SQL,
            {
                "run_id": run_id,
                "attempt": attempt,
                "now": now,
                "worker": worker_name,
                "on_worker": f" on {worker_name}" if worker_name else "",
                "data": Jsonb({"attempt": attempt, "worker": worker_name}),
                "eventlog": events.enabled(eventlog),
            },
        ).fetchone()
    if row is None:
        status = db.session.scalar(select(JobRun.status).where(JobRun.id == run_id))
        if status is None:
            logger.warning("Run %s no longer exists; nothing to do", run_id)
        else:
            logger.info("Run %s is already %s; nothing to do", run_id, status)
        db.session.rollback()
        return None
    return row


_ACTIVE_SQL = ", ".join(f"'{s.value}'" for s in sorted(ACTIVE_STATUSES, key=lambda s: s.value))

#: RUNNING and its event in one round trip (was: BEGIN, SELECT FOR UPDATE, INSERT,
#: UPDATE, COMMIT).
_BEGIN_SQL = f"""
    WITH r AS (
        UPDATE job_runs SET status = 'RUNNING', attempt = %(attempt)s,
            max_attempts = greatest(max_attempts, %(attempt)s),
            started_at = coalesce(started_at, %(now)s), scheduled_at = NULL,
            worker_name = %(worker)s, progress_done = 0
        WHERE id = %(run_id)s AND status IN ({_ACTIVE_SQL})
        RETURNING id, job_id, job_name, job_type, params, attempt, max_attempts,
            timeout_seconds, signal_id
    ), e AS (
        INSERT INTO events (at, type, status, message, run_id, job_id, data, signal_id)
        SELECT %(now)s, '{events.STARTED}', 'RUNNING',
            'attempt ' || %(attempt)s::integer || ' of ' || r.max_attempts || %(on_worker)s,
            r.id, r.job_id, %(data)s, r.signal_id
        FROM r WHERE %(eventlog)s
    )
    SELECT * FROM r
    """


def _lock_run(run_id: int) -> JobRun | None:
    # FOR NO KEY UPDATE: rows that only reference the run (log lines and events written
    # by other sessions, e.g. a job module's JobLogger) must not wait for this lock.
    return db.session.get(
        JobRun, run_id, with_for_update={"key_share": True}, populate_existing=True
    )


def _lock_if_current(run_id: int, attempt: int) -> JobRun | None:
    """The run, locked, if it is still RUNNING this attempt (else None, rolled back)."""
    run = _lock_run(run_id)
    if run is None or run.status != RunStatus.RUNNING.value or run.attempt != attempt:
        db.session.rollback()
        return None
    return run


def _runner_log(
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


def _job_config(run: JobRun) -> Mapping[str, Any]:
    settings = current_app.config
    values: dict[str, Any] = {key: settings[key] for key in PUBLIC_SETTINGS if key in settings}
    values["params"] = MappingProxyType(crypto.reveal_params(run.params or {}))
    values["run_id"] = run.id
    values["job_name"] = run.job_name
    values["attempt"] = run.attempt
    return MappingProxyType(values)


def _supervise(control: Control, futures: list[Future[Any]]) -> None:
    """Wait for the units, or until the control says stop."""
    pending = set(futures)
    while pending:
        _done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
        if pending and control.check():
            return


# ----------------------------------------------------------------------- global


def _run_global(
    run_id: int,
    attempt: int,
    job_type: registry.JobType,
    config: Mapping[str, Any],
    eventlog: bool,
    control: Control,
) -> Outcome | None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    future, unit_thread = GLOBAL_UNITS.submit(
        _global_unit, app, run_id, attempt, job_type, config, eventlog
    )
    _supervise(control, [future])
    if not future.done():
        # Stopped while the unit runs: its thread stays with it and leaves the pool.
        GLOBAL_UNITS.abandon(unit_thread)
        return _interrupt(run_id, attempt, control, eventlog, targets=[])
    try:
        return future.result()
    except Exception as exc:
        _fail(
            run_id,
            attempt,
            RunStatus.FAILED_UNEXPECTED,
            exc,
            eventlog,
            retry=not isinstance(exc, NotRetryable),
        )
        raise


def _global_unit(
    app: Flask,
    run_id: int,
    attempt: int,
    job_type: registry.JobType,
    config: Mapping[str, Any],
    eventlog: bool,
) -> Outcome | None:
    with app.app_context():
        try:
            try:
                value = job_type.run(None, run_id, config, db.session)
            except Exception:
                db.session.rollback()
                raise
            result = UnitResult.from_value(value)
            status = RunStatus.COMPLETED_SUCCESS if result.success else RunStatus.COMPLETED_FAILURE
            # The unit's own writes and the final status commit together — unless the
            # run was cancelled or timed out meanwhile: then the unit is rolled back.
            if not _finish_global(run_id, attempt, status, result, eventlog):
                db.session.rollback()
                return None
            db.session.commit()
            return Outcome(run_id, status, result.message, result.to_dict())
        finally:
            db.session.remove()


def _finish_global(
    run_id: int, attempt: int, status: RunStatus, result: UnitResult, eventlog: bool
) -> bool:
    """Write a global unit's final status and ``job.completed`` event (no commit).

    What ``_lock_if_current`` + ``_finish`` + ``events.record`` +
    ``release_dependants`` do, in one statement for the common case: the UPDATE only
    matches while the run is RUNNING this attempt (it locks the row and re-checks), the
    event is inserted from the updated row, and the same statement says whether any
    run waits for this one. Only when some run waits, or a webhook may be due, is the
    run loaded and handed to the usual ORM helpers, still in this transaction.
    False when the run is no longer RUNNING this attempt.
    """
    db.session.flush()  # the unit's own pending ORM writes go first, as before
    values = result.to_dict()
    arguments = {
        "run_id": run_id,
        "attempt": attempt,
        "now": utcnow(),
        "status": status.value,
        "message": result.message,
        "result": values,
        "event_message": result.message or status.value,
        "pre_data": result.pre_data,
        "post_data": result.post_data if result.post_data is not None else result.data,
        "eventlog": events.enabled(eventlog),
    }
    for key in ("result", "pre_data", "post_data"):
        if arguments[key] is not None:
            arguments[key] = Jsonb(arguments[key])
    if not db.session().in_transaction() and not webhooks.events_for_outcome(status.value, values):
        # The unit wrote nothing and no webhook is due: the ending is one statement,
        # its own transaction (one round trip instead of BEGIN, statement, COMMIT).
        # It does nothing when some run waits for this one: the transaction below
        # releases them with the ending.
        with database.autocommit(db.engine) as connection:
            ended, waiting = connection.execute(_FINISH_GLOBAL_ALONE_SQL, arguments).fetchone()
        if ended:
            return True
        if not waiting:
            return False  # no longer RUNNING this attempt
    connection = db.session.connection().connection.driver_connection
    cursor = connection.cursor(row_factory=namedtuple_row)
    row = cursor.execute(_FINISH_GLOBAL_SQL, arguments).fetchone()
    if row is None:
        return False
    if row.waiting or (row.job_id is not None and webhooks.events_for(row)):
        run = db.session.get(JobRun, run_id, populate_existing=True)
        assert run is not None
        webhooks.notify_run_ended(db.session, run)
        dependencies.release_dependants(db.session, run)
    return True


#: Runs waiting for the run {run} (a SQL expression).
_WAITING_DEPENDANTS_SQL = (
    "SELECT 1 FROM run_dependencies d JOIN job_runs w ON w.id = d.run_id "
    "WHERE d.depends_on_run_id = {run} AND w.status = '" + RunStatus.WAITING.value + "'"
)


def _finish_global_sql(guard: str, answer: str) -> str:
    """A global run's ending: the UPDATE (``guard`` added to its WHERE), the event, then
    ``answer`` (a SELECT; the CTE ``r`` holds the updated row, if any)."""
    return f"""
    WITH r AS (
        UPDATE job_runs SET status = %(status)s, message = %(message)s,
            result = %(result)s::jsonb, finished_at = %(now)s,
            duration_ms = CASE WHEN started_at IS NULL THEN duration_ms
                ELSE floor(extract(epoch FROM (%(now)s - started_at)) * 1000)::integer END,
            progress_total = CASE WHEN progress_total = 0 THEN 1 ELSE progress_total END,
            progress_done = CASE WHEN progress_total = 0 THEN 1 ELSE progress_total END
        WHERE id = %(run_id)s AND status = 'RUNNING' AND attempt = %(attempt)s {guard}
        RETURNING id, job_id, status, result, signal_id
    ), e AS (
        INSERT INTO events (at, type, status, message, run_id, job_id, result, pre_data,
            post_data, signal_id)
        SELECT %(now)s, '{events.COMPLETED}', r.status, %(event_message)s, r.id, r.job_id,
            %(result)s::jsonb, %(pre_data)s::jsonb, %(post_data)s::jsonb, r.signal_id
        FROM r WHERE %(eventlog)s
    )
    {answer}
    """


#: A global run's ending in one round trip, in the unit's transaction (was: SELECT
#: FOR UPDATE, SELECT of the waiting dependants, INSERT event, UPDATE run).
_FINISH_GLOBAL_SQL = _finish_global_sql(
    "",
    f"""SELECT r.id, r.job_id, r.status, r.result,
        EXISTS ({_WAITING_DEPENDANTS_SQL.format(run="r.id")}) AS waiting
    FROM r""",
)

#: The ending of a global run that wrote nothing, in autocommit. The UPDATE only
#: matches while the run is RUNNING this attempt and no run waits for it; the final
#: SELECT says which (one snapshot for both, so the answer is consistent).
_FINISH_GLOBAL_ALONE_SQL = _finish_global_sql(
    f"AND NOT EXISTS ({_WAITING_DEPENDANTS_SQL.format(run='%(run_id)s')})",
    f"""SELECT EXISTS (SELECT 1 FROM r),
        EXISTS ({_WAITING_DEPENDANTS_SQL.format(run="%(run_id)s")})""",
)


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
    control: Control,
) -> Outcome | None:
    try:
        run = db.session.get(JobRun, run_id)
        assert run is not None
        targets = _targets(load_devices(run))
        max_parallel = _parallelism(run)
        run.progress_total = len(targets)
        run.progress_done = 0
        # A retry starts the devices afresh.
        db.session.execute(DeviceResult.__table__.delete().where(DeviceResult.run_id == run_id))
        _runner_log(
            run,
            f"Dispatching {len(targets)} device(s), {max_parallel} at a time",
        )
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        _fail(run_id, attempt, RunStatus.FAILED_DISPATCHER_ERROR, exc, eventlog, retry=True)
        raise
    if targets and job_type.needs_credentials:
        try:
            targets = _resolve(run_id, attempt, targets, eventlog)
        except Exception as exc:
            db.session.rollback()
            _fail(
                run_id, attempt, RunStatus.FAILED_CREDENTIAL_RESOLUTION, exc, eventlog, retry=True
            )
            raise
        if targets is None:
            return None
        if not targets:
            run = _lock_if_current(run_id, attempt)
            if run is None:
                return None
            _finish(run, RunStatus.COMPLETED_NO_CREDENTIALS, "No targeted device has credentials.")
            events.record(
                db.session,
                run,
                events.COMPLETED,
                run.message or "",
                eventlog=eventlog,
                result={"metrics": run.metrics},
            )
            dependencies.release_dependants(db.session, run)
            db.session.commit()
            return Outcome(run_id, RunStatus.COMPLETED_NO_CREDENTIALS, run.message or "")
    if not targets:
        run = _lock_if_current(run_id, attempt)
        if run is None:
            return None
        _finish(run, RunStatus.COMPLETED_NO_DEVICES, "No enabled device matches the targets.")
        events.record(db.session, run, events.COMPLETED, run.message or "", eventlog=eventlog)
        dependencies.release_dependants(db.session, run)
        db.session.commit()
        return Outcome(run_id, RunStatus.COMPLETED_NO_DEVICES, run.message or "")

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # The breakers of all the run's devices in one statement, not one per device.
    connector = dispatch.make_connector(app, [target.id for target in targets])
    for target in targets:
        target.connector = connector
    pool = UnitPool(max_parallel, f"run{run_id}-dev")
    futures = [
        pool.submit(_device_unit, app, run_id, attempt, job_type, config, target, eventlog, control)
        for target in targets
    ]
    _supervise(control, futures)
    if control.reason is not None:
        pool.shutdown(cancel_pending=True)
        return _interrupt(run_id, attempt, control, eventlog, targets=targets)
    pool.shutdown()
    try:
        for future in futures:
            future.result()  # a unit's own errors are results; this re-raises runner bugs
    except Exception as exc:
        _fail(run_id, attempt, RunStatus.FAILED_DISPATCHER_ERROR, exc, eventlog, retry=True)
        raise
    run = _lock_if_current(run_id, attempt)
    if run is None:
        return None
    results = list(
        db.session.scalars(
            select(DeviceResult).where(DeviceResult.run_id == run_id).order_by(DeviceResult.id)
        )
    )
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    ok = counts.get("success", 0)
    if ok == len(results):
        final = RunStatus.COMPLETED_SUCCESS
    elif ok == 0:
        final = RunStatus.COMPLETED_FAILURE
    else:
        final = RunStatus.COMPLETED_PARTIAL_FAILURE
    message = f"{ok} of {len(results)} device(s) succeeded"
    summary: dict[str, Any] = {"devices": len(results), "by_status": counts}
    if job_type.finalize is not None:
        try:
            extra = job_type.finalize(run_id, results, config, db.session)
        except Exception as exc:
            db.session.rollback()
            _fail(run_id, attempt, RunStatus.FAILED_DISPATCHER_ERROR, exc, eventlog, retry=True)
            raise
        if isinstance(extra, Mapping):
            summary.update(audit.redact(dict(extra)))
            if extra.get("message"):
                message = f"{message}; {extra['message']}"
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
    dependencies.release_dependants(db.session, run)
    db.session.commit()
    return Outcome(run_id, final, message, summary, counts)


def _resolve(
    run_id: int, attempt: int, targets: list[DeviceTarget], eventlog: bool
) -> list[DeviceTarget] | None:
    """Give each target its credentials; devices without any get a failed result."""
    run = db.session.get(JobRun, run_id)
    assert run is not None
    _runner_log(
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
    run = _lock_if_current(run_id, attempt)
    if run is None:
        return None
    run.metrics = metrics
    now = utcnow()
    for target in missing:
        db.session.add(
            DeviceResult(
                run_id=run_id,
                device_id=target.id,
                device_name=target.name,
                status="no_credentials",
                message="No credentials: no credential shares a tag with this device.",
                started_at=now,
                finished_at=now,
                duration_ms=0,
            )
        )
    run.progress_done += len(missing)
    _runner_log(
        run,
        f"Handing off {len(ready)} device(s) with credentials to dispatcher "
        f"({metrics['resolved']}/{metrics['total']}, {metrics['percentage']}%)",
        level="info" if not missing else "warning",
        meta=metrics,
    )
    db.session.commit()
    return ready


def _parallelism(run: JobRun) -> int:
    limit = current_app.config["ROOKERY_WORKER_CONCURRENCY"]
    job = db.session.get(Job, run.job_id) if run.job_id else None
    if job is not None and job.max_parallel:
        return max(1, min(job.max_parallel, 64))
    return max(1, min(limit * 2, 64))


def _device_unit(
    app: Flask,
    run_id: int,
    attempt: int,
    job_type: registry.JobType,
    config: Mapping[str, Any],
    target: DeviceTarget,
    eventlog: bool,
    control: Control,
) -> str:
    """One device in its own app context, session and transaction; returns its status."""
    with app.app_context():
        try:
            if control.stop.is_set():
                return "skipped"  # the supervisor writes the results of unstarted devices
            slots = dispatch.device_slots(app.config["ROOKERY_WORKER_DEVICE_LIMIT"])
            while not slots.acquire(timeout=POLL_SECONDS):
                if control.stop.is_set():
                    return "skipped"
            try:
                return _device_work(run_id, attempt, job_type, config, target, eventlog, control)
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


def _device_work(
    run_id: int,
    attempt: int,
    job_type: registry.JobType,
    config: Mapping[str, Any],
    target: DeviceTarget,
    eventlog: bool,
    control: Control,
) -> str:
    started = utcnow()
    clock = time.monotonic()
    target.on_session_open = control.track
    target.on_session_close = control.untrack
    try:
        result = UnitResult.from_value(job_type.run(target, run_id, config, db.session))
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
        return _device_result(run_id, attempt, target, status, message, started, clock, eventlog)
    return _device_result(
        run_id,
        attempt,
        target,
        "success" if result.success else "failed",
        result.message,
        started,
        clock,
        eventlog,
        data=result.data,
        output=result.output,
    )


def _device_result(
    run_id: int,
    attempt: int,
    target: DeviceTarget,
    status: str,
    message: str,
    started: datetime,
    clock: float,
    eventlog: bool,
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
        "run_id": run_id,
        "attempt": attempt,
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
        "eventlog": events.enabled(eventlog),
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
#: that order, and one credential at most: no lock cycle with other devices.
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


# ------------------------------------------------------------------ interruption


def _interrupt(
    run_id: int,
    attempt: int,
    control: Control,
    eventlog: bool,
    *,
    targets: list[DeviceTarget],
) -> Outcome | None:
    """Stop the attempt: cancelled, timed out, or handed back because the worker stops."""
    closed = control.close_sessions()
    reason = control.reason
    run = _lock_if_current(run_id, attempt)
    if run is None:
        return None
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
    data = {"devices_in_flight_closed": closed, "attempt": attempt}
    if reason == SHUTDOWN:
        # Not the run's fault: another worker takes it at once, as a fresh attempt.
        retry_at = utcnow()
        run.status = RunStatus.QUEUED.value
        run.max_attempts += 1
        events.record(
            db.session,
            run,
            events.RETRIED,
            "the worker is shutting down; handed back to the queue",
            eventlog=eventlog,
            data={**data, "next_attempt": attempt + 1},
        )
        db.session.commit()
        raise RetryScheduled(run_id, retry_at)
    if reason == TIMED_OUT:
        message = f"Timed out after {control.timeout_seconds}s."
        _finish(run, RunStatus.TIMEOUT, message)
        events.record(db.session, run, events.TIMEOUT, message, eventlog=eventlog, data=data)
    else:
        message = f"Cancelled by {run.cancelled_by or 'an operator'}."
        _finish(run, RunStatus.CANCELLED, message)
        events.record(
            db.session,
            run,
            events.CANCELLED,
            message,
            eventlog=eventlog,
            actor=run.cancelled_by,
            data=data,
        )
    dependencies.release_dependants(db.session, run)
    db.session.commit()
    logger.info("Run %s %s (attempt %s)", run_id, run.status, attempt)
    return Outcome(run_id, RunStatus(run.status), message)


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
    # Every final status passes here, in the transaction that commits it.
    webhooks.notify_run_ended(db.session, run)


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
    run = _lock_if_current(run_id, attempt)
    if run is None:  # cancelled or timed out meanwhile: that ending stands
        return
    run.error = error
    run.error_traceback = trace
    _runner_log(
        run,
        f"Attempt {attempt} failed: {error}",
        level="error",
        meta={"error_type": error_type(status), "attempt": attempt},
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
        data={"attempt": attempt, "error_type": error_type(status)},
    )
    dependencies.release_dependants(db.session, run)
    db.session.commit()


def error_type(status: RunStatus) -> str:
    return {
        RunStatus.FAILED_CREDENTIAL_RESOLUTION: "CREDENTIAL",
        RunStatus.FAILED_DISPATCHER_ERROR: "DISPATCHER",
    }.get(status, "UNEXPECTED")


def fail_stalled(run_id: int, reason: str) -> str:
    """A worker died with this run RUNNING: retry it, or end it FAILED_UNEXPECTED.

    Returns "retry" or "failed" (or "" when the run had already ended); the caller
    moves procrastinate's job accordingly in the same transaction and commits.
    """
    run = _lock_run(run_id)
    if run is None or run.run_status.is_final:
        return ""
    run.error = reason
    _runner_log(
        run,
        reason,
        level="error",
        source="worker.recovery",
        meta={"error_type": "WORKER_LOST", "attempt": run.attempt},
    )
    if run.attempt < run.max_attempts:
        delay = backoff_delay(run, run.attempt)
        run.status = RunStatus.SCHEDULED.value
        run.scheduled_at = utcnow() + timedelta(seconds=delay)
        events.record(
            db.session,
            run,
            events.RETRIED,
            f"{reason}; retrying in {delay}s",
            data={
                "attempt": run.attempt,
                "next_attempt": run.attempt + 1,
                "delay_seconds": delay,
                "failed_status": "FAILED_UNEXPECTED",
            },
        )
        return "retry"
    _finish(run, RunStatus.FAILED_UNEXPECTED, reason)
    events.record(
        db.session,
        run,
        events.FAILED,
        reason,
        data={"attempt": run.attempt, "error_type": "WORKER_LOST"},
    )
    dependencies.release_dependants(db.session, run)
    return "failed"
