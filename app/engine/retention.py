"""Retention: old rows go, in small batches, once per interval across the cluster.

Every kind of row has its own limit (``ROOKERY_RETENTION_*``). Deletes run in
batches of ``batch_size`` ids, each batch its own short transaction, so a large
backlog never holds long locks or builds one huge transaction. Active runs and
queue entries still to do (``todo``/``doing``) are never touched, however old.

What a deleted run takes with it is decided by the foreign keys: its device
results, log lines and dependency links go (ON DELETE CASCADE); its events stay,
with ``run_id`` set to NULL, until their own, longer limit (the compliance
record); a schedule fire keeps its row with ``run_id`` NULL. A procrastinate job
takes its ``procrastinate_events`` rows (CASCADE) and is unlinked from
``procrastinate_periodic_defers`` by procrastinate's own BEFORE DELETE trigger.

One periodic task ticks every minute on any number of workers;
:func:`maintenance_due` lets exactly one of them run the cleanup per interval.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import text, update

from app import logs
from app.engine.queue import HOUSEKEEPING_QUEUE, queue_app
from app.extensions import db
from app.models import ACTIVE_STATUSES, MaintenanceState, utcnow

logger = logging.getLogger(__name__)

#: the MaintenanceState key of the cleanup chore
MAINTENANCE_KEY = "retention"

#: procrastinate job statuses that will not change any more
FINISHED_QUEUE_STATUSES = ("succeeded", "failed", "cancelled", "aborted")

_ACTIVE = sorted(status.value for status in ACTIVE_STATUSES)

# Each entry: the table, the SELECT of candidate ids (it must select ``id`` and take
# :cutoff), and a condition the DELETE re-checks on the row itself, so a row that
# changed between the sub-select and the delete (a run relaunched, a failed queue
# job retried by hand) is left alone.
_RUNS = (
    "job_runs",
    "SELECT id FROM job_runs"
    " WHERE status <> ALL(:active) AND COALESCE(finished_at, created_at) < :cutoff",
    "status <> ALL(:active)",
)
_SCHEDULE_FIRES = (
    "schedule_fires",
    "SELECT f.id FROM schedule_fires f WHERE f.created_at < :cutoff AND NOT EXISTS ("
    "SELECT 1 FROM job_runs r WHERE r.id = f.run_id AND r.status = ANY(:active))",
    None,
)
_JOB_LOGS = ("job_logs", "SELECT id FROM job_logs WHERE at < :cutoff", None)
_EVENTS = ("events", "SELECT id FROM events WHERE at < :cutoff", None)
_AUDIT = ("audit_log", "SELECT id FROM audit_log WHERE at < :cutoff", None)
_LOGIN_FAILURES = ("login_failures", "SELECT id FROM login_failures WHERE at < :cutoff", None)
# A finished queue job is as old as its latest event (procrastinate's own
# delete_old_jobs measures it the same way); one still tied to an active run stays.
_QUEUE_JOBS = (
    "procrastinate_jobs",
    "SELECT j.id FROM procrastinate_jobs j"
    " WHERE j.status = ANY(CAST(:finished AS procrastinate_job_status[]))"
    " AND (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id) < :cutoff"
    " AND NOT EXISTS (SELECT 1 FROM job_runs r"
    " WHERE r.procrastinate_job_id = j.id AND r.status = ANY(:active))",
    "status = ANY(CAST(:finished AS procrastinate_job_status[]))",
)


def _delete_in_batches(
    spec: tuple[str, str, str | None], params: dict[str, Any], batch_size: int
) -> int:
    """Delete every row ``spec`` selects, ``batch_size`` at a time, committing each batch."""
    table, candidates, recheck = spec
    statement = text(
        f"DELETE FROM {table} WHERE id IN ({candidates} ORDER BY id LIMIT :batch)"
        + (f" AND {recheck}" if recheck else "")
    )
    params = {**params, "batch": batch_size}
    total = 0
    while True:
        try:
            deleted = db.session.execute(statement, params).rowcount
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        total += deleted
        if deleted < batch_size:
            return total


def cleanup(now: datetime | None = None, batch_size: int = 1000) -> dict[str, int]:
    """Delete what is older than its retention limit; return how many rows went, per kind."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or utcnow()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    config = current_app.config

    def before(days: int = 0, seconds: int = 0) -> datetime:
        return now - timedelta(days=days, seconds=seconds)

    runs_cutoff = before(days=config["ROOKERY_RETENTION_RUNS_DAYS"])
    base = {"active": _ACTIVE, "finished": list(FINISHED_QUEUE_STATUSES)}
    plan = (
        # Runs first: their cascaded log lines and results leave with them.
        ("runs", _RUNS, runs_cutoff),
        ("schedule_fires", _SCHEDULE_FIRES, runs_cutoff),
        ("job_logs", _JOB_LOGS, before(days=config["ROOKERY_RETENTION_LOGS_DAYS"])),
        ("queue_jobs", _QUEUE_JOBS, before(days=config["ROOKERY_RETENTION_QUEUE_DAYS"])),
        ("events", _EVENTS, before(days=config["ROOKERY_RETENTION_EVENTS_DAYS"])),
        ("audit", _AUDIT, before(days=config["ROOKERY_RETENTION_AUDIT_DAYS"])),
        (
            "login_failures",
            _LOGIN_FAILURES,
            before(seconds=config["ROOKERY_LOGIN_WINDOW_SECONDS"]),
        ),
    )
    counts: dict[str, int] = {}
    for kind, spec, cutoff in plan:
        counts[kind] = _delete_in_batches(spec, {**base, "cutoff": cutoff}, batch_size)
    summary = ", ".join(f"{kind} {n}" for kind, n in counts.items())
    logs.system("info", "retention", f"Retention cleanup deleted: {summary}", meta=counts)
    logger.info("Retention cleanup deleted: %s", summary)
    return counts


def maintenance_due(key: str, interval: timedelta, now: datetime | None = None) -> bool:
    """Claim chore ``key`` if it last ran ``interval`` or longer ago; true only for the claimer.

    One statement does it: the first caller inserts the row, later ones update it
    only while it is old enough. PostgreSQL serialises concurrent callers on the
    row, and the loser re-checks the WHERE against the winner's fresh timestamp.
    """
    now = now or utcnow()
    claimed = db.session.execute(
        text(
            "INSERT INTO maintenance_state (key, last_run_at) VALUES (:key, :now) "
            "ON CONFLICT (key) DO UPDATE SET last_run_at = EXCLUDED.last_run_at "
            "WHERE maintenance_state.last_run_at IS NULL "
            "OR maintenance_state.last_run_at <= :due "
            "RETURNING key"
        ),
        {"key": key, "now": now, "due": now - interval},
    ).first()
    db.session.commit()
    return claimed is not None


def _record(key: str, data: dict[str, Any]) -> None:
    """Keep what the chore's last run did beside its claim (for pages and operators)."""
    db.session.execute(
        update(MaintenanceState).where(MaintenanceState.key == key).values(data=data)
    )
    db.session.commit()


@queue_app.periodic(cron="* * * * *", periodic_id="retention-tick")
@queue_app.task(
    name="rookery.retention_tick",
    queue=HOUSEKEEPING_QUEUE,
    queueing_lock="rookery.retention_tick",
)
def retention_tick(timestamp: int) -> dict[str, int] | None:
    """Every minute on some worker: run the cleanup when its interval has passed.

    ``timestamp`` is the cron slot procrastinate deferred this tick for; the cleanup
    measures ages from the clock, since a tick may run late.
    """
    interval = timedelta(minutes=current_app.config["ROOKERY_CLEANUP_INTERVAL_MINUTES"])
    if not maintenance_due(MAINTENANCE_KEY, interval):
        return None
    started = utcnow()
    counts = cleanup(now=started)
    _record(
        MAINTENANCE_KEY,
        {
            "tick": timestamp,
            "started_at": started.isoformat(),
            "finished_at": utcnow().isoformat(),
            "deleted": counts,
        },
    )
    return counts
