"""Statistics: run outcomes, durations, what waits in the queue, which workers live.

Every figure is one set-based query. A run is one row however many attempts it
took, and only a final status counts as an outcome (between attempts a run is
SCHEDULED), so a retried run is counted once, by its last attempt.

Ages are measured against the database's clock (procrastinate stamps its events
and heartbeats with it), unless a caller hands ``now``.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db
from app.models import ACTIVE_STATUSES, DeviceResult, JobRun, RunStatus

logger = logging.getLogger(__name__)

#: a worker heartbeats every few seconds; this long a silence means it is gone
WORKER_ALIVE_SECONDS = 30

#: device result statuses that are not a failure of the device
_NOT_FAILURES = ("success", "cancelled")

_ACTIVE = sorted(status.value for status in ACTIVE_STATUSES)


def db_now() -> datetime:
    """The database server's clock."""
    return db.session.scalar(select(func.statement_timestamp()))


def _finished_in(since: datetime, until: datetime | None) -> list[ColumnElement[bool]]:
    conditions = [JobRun.status.not_in(_ACTIVE), JobRun.finished_at >= since]
    if until is not None:
        conditions.append(JobRun.finished_at < until)
    return conditions


def outcome_group(status: str) -> str:
    """success, partial, failure, cancelled or other (no devices, no credentials)."""
    value = RunStatus(status)
    if value is RunStatus.COMPLETED_SUCCESS:
        return "success"
    if value is RunStatus.COMPLETED_PARTIAL_FAILURE:
        return "partial"
    if value is RunStatus.CANCELLED:
        return "cancelled"
    if value.is_failure:
        return "failure"
    return "other"


def statistics(
    *, since: datetime, until: datetime | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Outcomes and durations of runs finished in [since, until), and the state right now."""
    now = now or db_now()
    window = _finished_in(since, until)

    by_status = {
        status: count
        for status, count in db.session.execute(
            select(JobRun.status, func.count()).where(*window).group_by(JobRun.status)
        )
    }
    finished = sum(by_status.values())
    succeeded = by_status.get(RunStatus.COMPLETED_SUCCESS.value, 0)

    p50 = func.percentile_cont(0.5).within_group(JobRun.duration_ms)
    p95 = func.percentile_cont(0.95).within_group(JobRun.duration_ms)
    durations = {
        row.job_type: {"runs": row.runs, "p50_ms": _ms(row.p50), "p95_ms": _ms(row.p95)}
        for row in db.session.execute(
            select(
                JobRun.job_type,
                func.count().label("runs"),
                p50.label("p50"),
                p95.label("p95"),
            )
            .where(*window, JobRun.duration_ms.is_not(None))
            .group_by(JobRun.job_type)
            .order_by(JobRun.job_type)
        )
    }

    active = {
        status: count
        for status, count in db.session.execute(
            select(JobRun.status, func.count())
            .where(JobRun.status.in_(_ACTIVE))
            .group_by(JobRun.status)
        )
    }

    return {
        "since": since.isoformat(),
        "until": until.isoformat() if until else None,
        "now": now.isoformat(),
        "runs": {
            "by_status": dict(sorted(by_status.items())),
            "finished": finished,
            "success_rate": succeeded / finished if finished else None,
        },
        "durations": durations,
        "now_running": active.get(RunStatus.RUNNING.value, 0),
        "now_queued": active.get(RunStatus.QUEUED.value, 0),
        "now_scheduled": active.get(RunStatus.SCHEDULED.value, 0),
        "now_waiting": active.get(RunStatus.WAITING.value, 0),
        "oldest_queued_run": oldest_queued_run(now),
        "queue": queue_summary(now),
        "workers": workers_alive(),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, round((now - then).total_seconds(), 3))


def oldest_queued_run(now: datetime | None = None) -> dict[str, Any] | None:
    """The run that has waited longest in QUEUED: id, queued_at, age in seconds."""
    now = now or db_now()
    queued_at = func.coalesce(JobRun.queued_at, JobRun.created_at)
    row = db.session.execute(
        select(JobRun.id, queued_at.label("queued_at"))
        .where(JobRun.status == RunStatus.QUEUED.value)
        .order_by(queued_at, JobRun.id)
        .limit(1)
    ).first()
    if row is None:
        return None
    return {
        "id": row.id,
        "queued_at": row.queued_at.isoformat(),
        "age_seconds": _age(now, row.queued_at),
    }


# A due queue entry became due at the later of its scheduled time and the moment it
# last entered 'todo' (deferred, deferred again for a retry, retried by hand).
_QUEUE_DEPTH = text(
    "SELECT priority, count(*) AS jobs FROM procrastinate_jobs"
    " WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= :now)"
    " GROUP BY priority ORDER BY priority DESC"
)
_OLDEST_DUE = text(
    "SELECT j.id, GREATEST(j.scheduled_at, t.entered) AS due_since"
    " FROM procrastinate_jobs j"
    " LEFT JOIN LATERAL (SELECT max(e.at) AS entered FROM procrastinate_events e"
    "  WHERE e.job_id = j.id AND e.type IN ('deferred', 'deferred_for_retry', 'retried')"
    " ) t ON true"
    " WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= :now)"
    " ORDER BY due_since NULLS LAST, j.id LIMIT 1"
)


def queue_summary(now: datetime | None = None) -> dict[str, Any]:
    """Due queue entries: how many (per priority) and how long the oldest has waited."""
    now = now or db_now()
    by_priority = [
        {"priority": row.priority, "jobs": row.jobs}
        for row in db.session.execute(_QUEUE_DEPTH, {"now": now})
    ]
    oldest = db.session.execute(_OLDEST_DUE, {"now": now}).first()
    lag = 0.0
    if oldest is not None and oldest.due_since is not None:
        lag = _age(now, oldest.due_since)
    return {
        "depth": sum(item["jobs"] for item in by_priority),
        "by_priority": by_priority,
        "lag_seconds": lag,
        "oldest_job_id": oldest.id if oldest is not None else None,
    }


def workers_alive() -> dict[str, Any]:
    """Workers taking runs whose procrastinate heartbeat is recent (by the database's
    clock); each worker process's housekeeping worker is not counted."""
    rows = db.session.execute(
        text(
            "SELECT w.id, w.last_heartbeat, m.data FROM procrastinate_workers w "
            "LEFT JOIN maintenance_state m ON m.key = 'worker:' || w.id "
            "WHERE w.last_heartbeat > now() - make_interval(secs => :secs) "
            "AND coalesce(m.data->>'role', 'runs') <> 'housekeeping' ORDER BY w.id"
        ),
        {"secs": WORKER_ALIVE_SECONDS},
    ).all()
    workers = []
    for r in rows:
        details = r.data or {}
        workers.append(
            {
                "id": r.id,
                "last_heartbeat": r.last_heartbeat.isoformat(),
                "name": details.get("name"),
                "host": details.get("host"),
                "pid": details.get("pid"),
                "concurrency": details.get("concurrency"),
            }
        )
    return {
        "alive": len(rows),
        "concurrency": sum(w["concurrency"] or 0 for w in workers),
        "workers": workers,
    }


def runs_per_day(days: int, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Outcomes of the runs finished on each of the last ``days`` UTC days, oldest first."""
    if days < 1:
        raise ValueError("days must be at least 1")
    now = (now or db_now()).astimezone(UTC)
    first = now.date() - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    day = func.date(func.timezone("UTC", JobRun.finished_at)).label("day")
    rows = db.session.execute(
        select(day, JobRun.status, func.count().label("runs"))
        .where(*_finished_in(start, None))
        .group_by(day, JobRun.status)
    )
    table: dict[date, dict[str, Any]] = {
        first + timedelta(days=n): _empty_day(first + timedelta(days=n)) for n in range(days)
    }
    for row in rows:
        entry = table.get(row.day)
        if entry is None:  # finished "in the future" by a skewed clock
            continue
        entry["total"] += row.runs
        entry[outcome_group(row.status)] += row.runs
        entry["by_status"][row.status] = row.runs
    return list(table.values())


def _empty_day(day: date) -> dict[str, Any]:
    return {
        "date": day.isoformat(),
        "total": 0,
        "success": 0,
        "partial": 0,
        "failure": 0,
        "cancelled": 0,
        "other": 0,
        "by_status": {},
    }


def failing_devices(since: datetime, limit: int = 10) -> list[dict[str, Any]]:
    """Devices with the most failed results since ``since`` (cancelled results aside)."""
    at = func.coalesce(DeviceResult.finished_at, DeviceResult.started_at, JobRun.created_at)
    failures = func.count().label("failures")
    rows = db.session.execute(
        select(
            DeviceResult.device_name,
            func.max(DeviceResult.device_id).label("device_id"),
            failures,
            func.max(at).label("last_failure_at"),
        )
        .join(JobRun, JobRun.id == DeviceResult.run_id)
        .where(DeviceResult.status.not_in(_NOT_FAILURES), at >= since)
        .group_by(DeviceResult.device_name)
        .order_by(failures.desc(), DeviceResult.device_name)
        .limit(limit)
    )
    return [
        {
            "device_name": row.device_name,
            "device_id": row.device_id,
            "failures": row.failures,
            "last_failure_at": row.last_failure_at.isoformat(),
        }
        for row in rows
    ]
