"""Runs (list, read, cancel, relaunch, events) and log lines, keyset-paginated."""

from __future__ import annotations

import logging

from flask import request

from app import present
from app.api import schemas as s
from app.api.base import ID, actor, bp, requires, responses, spec
from app.models import Role
from app.services import logs as log_service
from app.services import runs

logger = logging.getLogger(__name__)


@bp.get("/runs")
@spec.validate(query=s.RunQuery, resp=responses(HTTP_200=s.RunList), tags=["runs"])
@requires(Role.VIEWER)
def list_runs():
    """Runs newest first, filtered; ``next`` is the ``before`` of the next (older) page."""
    q: s.RunQuery = request.context.query
    rows, next_cursor = runs.list_runs(
        status=q.status,
        job_type=q.job_type,
        job_id=q.job_id,
        device=q.device,
        trigger=q.trigger,
        since=q.since,
        until=q.until,
        before_id=q.before,
        limit=q.limit,
    )
    return {"items": [present.run(r) for r in rows], "next": next_cursor}


@bp.get(f"/runs/<{ID}:run_id>")
@spec.validate(resp=responses(HTTP_200=s.RunDetail), tags=["runs"])
@requires(Role.VIEWER)
def get_run(run_id: int):
    """A run: status, progress, timings, attempt and its per-device results."""
    return present.run_detail(runs.get_run(run_id), runs.device_results(run_id))


@bp.post(f"/runs/<{ID}:run_id>/cancel")
@spec.validate(resp=responses(HTTP_200=s.RunDetail), tags=["runs"])
@requires(Role.OPERATOR)
def cancel_run(run_id: int):
    """Cancel a run: at once if it has not started, within seconds if it is running."""
    run = runs.cancel_run(run_id, actor=actor())
    return present.run_detail(runs.get_run(run.id), runs.device_results(run.id))


@bp.post(f"/runs/<{ID}:run_id>/relaunch")
@spec.validate(json=s.Relaunch, resp=responses(HTTP_201=s.RunDetail), tags=["runs"])
@requires(Role.OPERATOR)
def relaunch_run(run_id: int):
    """Start a run like an ended one: all its devices, or (``failed_only``) the failed ones."""
    body: s.Relaunch = request.context.json
    run = runs.relaunch_run(run_id, failed_only=body.failed_only, actor=actor())
    return present.run_detail(runs.get_run(run.id), []), 201


@bp.get(f"/runs/<{ID}:run_id>/events")
@spec.validate(query=s.EventQuery, resp=responses(HTTP_200=s.EventList), tags=["runs"])
@requires(Role.VIEWER)
def run_events(run_id: int):
    """The run's event trail, oldest first (``type`` filters, ``after`` an event id)."""
    q: s.EventQuery = request.context.query
    runs.get_run(run_id)
    rows = runs.run_events(run_id, types=q.type, after_id=q.after or 0)
    return [present.event(e) for e in rows]


@bp.get("/logs")
@spec.validate(query=s.LogQuery, resp=responses(HTTP_200=s.LogList), tags=["logs"])
@requires(Role.VIEWER)
def list_logs():
    """Log lines, newest first (``before`` pages back), or oldest first after ``after``.

    ``level`` means that level and above; ``next`` is the cursor of the next page.
    """
    q: s.LogQuery = request.context.query
    where = log_service.LogFilter(
        run_id=q.run_id,
        job_id=q.job_id,
        device_id=q.device_id,
        log_type=q.log_type,
        source=q.source,
        level=q.level,
        since=q.since,
        until=q.until,
    )
    rows, next_cursor = log_service.query_logs(
        where,
        before_id=q.before,
        after_id=q.after,
        limit=q.limit,
        oldest_first=q.after is not None,
    )
    admin = actor().has_role(Role.ADMIN)  # why a webhook failed is for admins only
    return {"items": [log_service.as_dict(r, admin=admin) for r in rows], "next": next_cursor}
