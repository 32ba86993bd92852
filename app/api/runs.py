"""Runs (list, read, cancel, relaunch, events, per-device results) and log lines; every
list keyset-paginated (``app.api.paging``).

A run's answer carries its status and how many devices ended how (``summary``), never
the devices' outputs: a backup of 10,000 devices holds hundreds of MB of configs. The
results come a page at a time from ``/runs/{id}/results``, one device's output from
``/runs/{id}/results/{device}``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import request, url_for

from app import present
from app.api import paging
from app.api import schemas as s
from app.api.base import ID, actor, bp, requires, responses, spec
from app.models import DeviceResult, Event, JobRun, Role
from app.services import logs as log_service
from app.services import runs

logger = logging.getLogger(__name__)


def run_detail(run: JobRun) -> dict[str, Any]:
    """A run as its own answer: the run, its results counted by status, where they are."""
    return {
        **present.run(run),
        "summary": runs.result_summary(run.id),
        "results_url": url_for("api.list_results", run_id=run.id),
    }


def _result_url(result: DeviceResult) -> str:
    return url_for("api.get_result", run_id=result.run_id, device=result.device_name)


def result_row(result: DeviceResult, output_bytes: int | None) -> dict[str, Any]:
    """A device's result in a list: everything but its output and data."""
    return {
        "id": result.id,
        "device": result.device_name,
        "device_id": result.device_id,
        "status": result.status,
        "message": result.message or "",
        "credential": result.credential_name,
        "changed": result.changed,
        "commit": result.commit_sha,
        "connect_attempts": result.connect_attempts or 0,
        "started_at": present.iso(result.started_at),
        "finished_at": present.iso(result.finished_at),
        "duration_ms": result.duration_ms,
        "output_bytes": output_bytes,
        "output_url": _result_url(result),
    }


@bp.get("/runs")
@spec.validate(query=s.RunQuery, resp=responses(HTTP_200=s.RunList), tags=["runs"])
@requires(Role.VIEWER)
def list_runs():
    """Runs newest first, filtered; ``next`` is the ``cursor`` of the next (older) page."""
    q: s.RunQuery = request.context.query
    rows, next_cursor = runs.list_runs(
        status=q.status,
        job_type=q.job_type,
        job_id=q.job_id,
        device=q.device,
        trigger=q.trigger,
        since=q.since,
        until=q.until,
        before_id=paging.older_than(q.before, q.cursor),
        limit=q.limit,
    )
    return paging.envelope([present.run(r) for r in rows], next_cursor)


@bp.get(f"/runs/<{ID}:run_id>")
@spec.validate(resp=responses(HTTP_200=s.RunDetail), tags=["runs"])
@requires(Role.VIEWER)
def get_run(run_id: int):
    """A run: status, progress, timings, attempt, and its device results counted by status
    (the results themselves: ``results_url``)."""
    return run_detail(runs.get_run(run_id))


@bp.get(f"/runs/<{ID}:run_id>/results")
@spec.validate(query=s.ResultQuery, resp=responses(HTTP_200=s.DeviceResultList), tags=["runs"])
@requires(Role.VIEWER)
def list_results(run_id: int):
    """The run's device results by device name, without outputs (each row's
    ``output_url`` has it); ``status`` (or ``any_failure``) and ``device`` (part of a
    name) filter."""
    q: s.ResultQuery = request.context.query
    run = runs.get_run(run_id)
    rows, next_cursor = paging.page_query(
        runs.results_query(run.id, status=q.status, device=q.device),
        [paging.Key(DeviceResult.device_name), paging.Key(DeviceResult.id)],
        cursor=q.cursor,
        limit=q.limit,
        values=lambda row: (row[0].device_name, row[0].id),
    )
    return paging.envelope([result_row(r, size) for r, size in rows], next_cursor)


@bp.get(f"/runs/<{ID}:run_id>/results/<path:device>")
@spec.validate(resp=responses(HTTP_200=s.DeviceResultOut), tags=["runs"])
@requires(Role.VIEWER)
def get_result(run_id: int, device: str):
    """One device's result in the run, by the device's name, with its output and data."""
    result = runs.device_result(run_id, device)
    output = result.output
    return {
        **result_row(result, len(output.encode()) if output is not None else None),
        "data": result.data,
        "output": output,
    }


@bp.post(f"/runs/<{ID}:run_id>/cancel")
@spec.validate(resp=responses(HTTP_200=s.RunDetail), tags=["runs"])
@requires(Role.OPERATOR)
def cancel_run(run_id: int):
    """Cancel a run: at once if it has not started, within seconds if it is running."""
    run = runs.cancel_run(run_id, actor=actor())
    return run_detail(runs.get_run(run.id))


@bp.post(f"/runs/<{ID}:run_id>/relaunch")
@spec.validate(json=s.Relaunch, resp=responses(HTTP_201=s.RunDetail), tags=["runs"])
@requires(Role.OPERATOR)
def relaunch_run(run_id: int):
    """Start a run like an ended one: all its devices, or (``failed_only``) the failed ones."""
    body: s.Relaunch = request.context.json
    run = runs.relaunch_run(run_id, failed_only=body.failed_only, actor=actor())
    return run_detail(runs.get_run(run.id)), 201


@bp.get(f"/runs/<{ID}:run_id>/events")
@spec.validate(query=s.EventQuery, resp=responses(HTTP_200=s.EventList), tags=["runs"])
@requires(Role.VIEWER)
def run_events(run_id: int):
    """The run's event trail, oldest first (``type`` filters, ``after`` an event id)."""
    q: s.EventQuery = request.context.query
    runs.get_run(run_id)
    rows, next_cursor = paging.page_query(
        runs.run_events_query(run_id, types=q.type, after_id=q.after or 0),
        [paging.Key(Event.id)],
        cursor=q.cursor,
        limit=q.limit,
        values=lambda e: (e.id,),
    )
    return paging.envelope([present.event(e) for e in rows], next_cursor)


@bp.get("/logs")
@spec.validate(query=s.LogQuery, resp=responses(HTTP_200=s.LogList), tags=["logs"])
@requires(Role.VIEWER)
def list_logs():
    """Log lines, newest first, or oldest first after ``after`` (as a follower reads).

    ``level`` means that level and above; ``next`` is the ``cursor`` of the next page,
    in the same direction.
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
    if q.after is not None:  # oldest first from ``after``; the cursor moves it on
        start = paging.decode(q.cursor, [int])[0] if q.cursor is not None else 0
        rows, next_cursor = log_service.query_logs(
            where,
            after_id=max(q.after, start),
            before_id=q.before,
            limit=q.limit,
            oldest_first=True,
        )
    else:
        rows, next_cursor = log_service.query_logs(
            where, before_id=paging.older_than(q.before, q.cursor), limit=q.limit
        )
    admin = actor().has_role(Role.ADMIN)  # why a webhook failed is for admins only
    return paging.envelope([log_service.as_dict(r, admin=admin) for r in rows], next_cursor)
