"""Schedules, statistics, the audit trail (admin) and per-job webhooks."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flask import request

from app import audit, present
from app.api import jobs as job_views
from app.api import paging
from app.api import schemas as s
from app.api.base import ID, actor, bp, requires, responses, spec
from app.models import AuditEntry, Job, Role, Schedule
from app.services import jobs as job_service
from app.services import schedules as schedule_service
from app.services import stats

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------ schedules


@bp.get("/schedules")
@spec.validate(query=s.ScheduleQuery, resp=responses(HTTP_200=s.ScheduleList), tags=["schedules"])
@requires(Role.VIEWER)
def list_schedules():
    """Schedules by job name (only one job's with ``job_id``)."""
    q: s.ScheduleQuery = request.context.query
    rows, next_cursor = paging.page_query(
        schedule_service.list_schedules(q.job_id),
        [paging.Key(Job.name), paging.Key(Schedule.id)],
        cursor=q.cursor,
        limit=q.limit,
        values=lambda r: (r.job.name, r.id),
    )
    return paging.envelope([present.schedule(r) for r in rows], next_cursor)


@bp.post("/schedules")
@spec.validate(json=s.ScheduleCreate, resp=responses(HTTP_201=s.ScheduleOut), tags=["schedules"])
@requires(Role.OPERATOR)
def create_schedule():
    """Schedule a saved job: every N minutes, by a cron expression, or once."""
    body: s.ScheduleCreate = request.context.json
    job = job_service.get_job(body.job_id)
    job_views.add_schedule(job, body.schedule)
    latest = max(job.schedules, key=lambda row: row.id)
    return present.schedule(latest), 201


@bp.get(f"/schedules/<{ID}:schedule_id>")
@spec.validate(resp=responses(HTTP_200=s.ScheduleOut), tags=["schedules"])
@requires(Role.VIEWER)
def get_schedule(schedule_id: int):
    """One schedule with its next fire time."""
    return present.schedule(schedule_service.get_schedule(schedule_id))


@bp.patch(f"/schedules/<{ID}:schedule_id>")
@spec.validate(json=s.SchedulePatch, resp=responses(HTTP_200=s.ScheduleOut), tags=["schedules"])
@requires(Role.OPERATOR)
def update_schedule(schedule_id: int):
    """New timing and/or enabled; the next fire time follows (missed slots are not caught up)."""
    body: s.SchedulePatch = request.context.json
    schedule = schedule_service.get_schedule(schedule_id)
    changes: dict[str, Any] = {}
    if body.schedule is not None:
        changes.update(
            {
                "kind": body.schedule.kind,
                "interval_minutes": getattr(body.schedule, "minutes", None),
                "cron": getattr(body.schedule, "expression", None),
                "timezone": getattr(body.schedule, "timezone", "UTC"),
                "run_at": getattr(body.schedule, "at", None),
                "enabled": body.schedule.enabled,
            }
        )
    if body.enabled is not None:
        changes["enabled"] = body.enabled
    if changes:
        schedule = schedule_service.update_schedule(schedule, actor=actor(), **changes)
    return present.schedule(schedule)


@bp.delete(f"/schedules/<{ID}:schedule_id>")
@spec.validate(resp=responses(HTTP_204=None), tags=["schedules"])
@requires(Role.OPERATOR)
def delete_schedule(schedule_id: int):
    """Delete a schedule (the runs it started stay)."""
    schedule_service.delete_schedule(schedule_service.get_schedule(schedule_id), actor=actor())
    return "", 204


# ----------------------------------------------------------------------- statistics


@bp.get("/statistics")
@spec.validate(query=s.StatsQuery, resp=responses(HTTP_200=s.StatsOut), tags=["statistics"])
@requires(Role.VIEWER)
def statistics():
    """Run outcomes and durations since ``since`` (default: a day ago), the queue, workers,
    runs per day for ``days`` days and the devices that fail most."""
    q: s.StatsQuery = request.context.query
    now = stats.db_now()
    since = q.since or now - timedelta(days=1)
    report = stats.statistics(since=since, until=q.until, now=now)
    report["runs_per_day"] = stats.runs_per_day(q.days, now=now)
    report["failing_devices"] = stats.failing_devices(since)
    return report


# ---------------------------------------------------------------------------- audit


@bp.get("/audit")
@spec.validate(query=s.AuditQuery, resp=responses(HTTP_200=s.AuditList), tags=["audit"])
@requires(Role.ADMIN)
def audit_trail():
    """Who changed what, newest first; ``next`` is the ``cursor`` of the next page."""
    q: s.AuditQuery = request.context.query
    query = audit.list_entries(
        actor=q.actor, object_type=q.object_type, action=q.action, since=q.since, until=q.until
    )
    before = paging.older_than(q.before, q.cursor)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    rows, next_cursor = paging.page_query(
        query,
        [paging.Key(AuditEntry.id, descending=True)],
        cursor=None,
        limit=q.limit,
        values=lambda r: (r.id,),
    )
    return paging.envelope([present.audit_entry(r) for r in rows], next_cursor)
