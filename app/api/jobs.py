"""Job types and jobs: list, create (with a schedule), read, change, delete; start runs."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import current_app, request
from sqlalchemy import select

from app import present, registry
from app.api import paging
from app.api import schemas as s
from app.api.base import ID, actor, bp, requires, responses, spec
from app.api.runs import run_detail
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.models import Device, Job, JobRun, Role, utcnow
from app.services import jobs as job_service
from app.services import runs
from app.services import schedules as schedule_service

logger = logging.getLogger(__name__)

#: how long ``?wait=`` may hold a request, whatever the client asks
DEFAULT_MAX_WAIT_SECONDS = 300
POLL_SECONDS = 0.25


@bp.get("/job-types")
@spec.validate(resp=responses(HTTP_200=s.JobTypesOut), tags=["jobs"])
@requires(Role.VIEWER)
def job_types():
    """The job types this installation knows, and the modules it had to skip."""
    current = registry.current()
    return {
        "job_types": [t.to_dict() for t in current.sorted()],
        "skipped": [{"path": m.source, "reason": m.reason} for m in current.skipped],
    }


@bp.get("/me")
@spec.validate(resp=responses(HTTP_200=s.MeOut), tags=["auth"])
@requires(Role.VIEWER)
def me():
    """Who this token belongs to."""
    user = actor()
    return {"id": user.id, "username": user.username, "role": user.role}


# ---------------------------------------------------------------------------- helpers


def device_ids(refs: list[str | int], field: str) -> list[int]:
    """Device ids from names or ids; unknown names are a 422 naming them."""
    names = sorted({r for r in refs if isinstance(r, str)})
    ids = {r for r in refs if isinstance(r, int)}
    if names:
        found = dict(
            db.session.execute(select(Device.name, Device.id).where(Device.name.in_(names))).all()
        )
        missing = [n for n in names if n not in found]
        if missing:
            shown = ", ".join(missing[:10])
            raise ValidationError(f"Unknown devices: {shown}.", fields={field: f"Unknown: {shown}"})
        ids.update(found.values())
    return sorted(ids)


def _check_schedule(given: Any) -> None:
    """Validate a schedule before anything is written (a bad one leaves no job behind)."""
    if given is None:
        return
    try:
        schedule_service.validate(**_schedule_args(given), now=utcnow())
    except ValidationError as exc:
        raise ValidationError(
            exc.message, fields={f"schedule.{k}": v for k, v in exc.fields.items()}
        ) from None


def _schedule_args(given: Any) -> dict[str, Any]:
    return {
        "kind": given.kind,
        "interval_minutes": getattr(given, "minutes", None),
        "cron": getattr(given, "expression", None),
        "timezone": getattr(given, "timezone", "UTC"),
        "run_at": getattr(given, "at", None),
    }


def add_schedule(job: Any, given: Any) -> None:
    schedule_service.create_schedule(
        job, **_schedule_args(given), enabled=given.enabled, actor=actor()
    )


def _service_fields(body: s.JobFields) -> dict[str, Any]:
    """The API's job fields as the jobs service names them (only those given)."""
    given = body.model_fields_set
    out: dict[str, Any] = {}
    plain = ("params", "priority", "max_retries", "timeout_seconds", "max_parallel")
    plain += ("description", "labels", "enabled")
    for name in plain:
        if name in given:
            out[name] = getattr(body, name)
    renamed = {
        "retry_backoff_seconds": "retry_delay_seconds",
        "retry_backoff_max_seconds": "retry_max_delay_seconds",
        "credentials": "credential_names",
        "depends_on": "depends_on_job_ids",
    }
    for api_name, service_name in renamed.items():
        if api_name in given:
            value = getattr(body, api_name)
            out[service_name] = value if api_name.startswith("retry") else (value or [])
    if "allow_overlap" in given and body.allow_overlap is not None:
        out["no_overlap"] = not body.allow_overlap
    if "targets" in given:
        targets = body.targets or s.Targets()
        out["target_tags"] = list(targets.tags)
        out["target_device_ids"] = device_ids(list(targets.devices), "targets.devices")
    for key in ("description", "labels", "params", "enabled", "priority"):
        if key in out and out[key] is None:
            del out[key]
    return out


def _known_type(job_type: str) -> None:
    if job_type not in registry.current():
        known = ", ".join(sorted(registry.current().types)) or "(none)"
        raise ValidationError(
            f"Unknown job type {job_type!r}; registered: {known}.",
            fields={"job_type": f"One of: {known}."},
        )


# ------------------------------------------------------------------------------- jobs


@bp.get("/jobs")
@spec.validate(query=s.JobQuery, resp=responses(HTTP_200=s.JobList), tags=["jobs"])
@requires(Role.VIEWER)
def list_jobs():
    """Saved jobs by name, optionally with a label, of a type, or matching a search."""
    q: s.JobQuery = request.context.query
    rows, next_cursor = paging.page_query(
        job_service.list_jobs(label=q.label, job_type=q.job_type, search=q.search),
        [paging.Key(Job.name)],
        cursor=q.cursor,
        limit=q.limit,
        values=lambda j: (j.name,),
    )
    return paging.envelope([present.job(j) for j in rows], next_cursor)


@bp.post("/jobs")
@spec.validate(json=s.JobCreate, resp=responses(HTTP_201=s.JobOut), tags=["jobs"])
@requires(Role.OPERATOR)
def create_job():
    """Save a job (and its schedule, in the same request)."""
    body: s.JobCreate = request.context.json
    _known_type(body.job_type)
    _check_schedule(body.schedule)
    fields = _service_fields(body)
    job = job_service.create_job(name=body.name, job_type=body.job_type, actor=actor(), **fields)
    if body.schedule is not None:
        try:
            add_schedule(job, body.schedule)
        except BaseException:
            db.session.rollback()
            job_service.delete_job(job.id, actor=actor())
            raise
    return present.job(job_service.get_job(job.id)), 201


@bp.get(f"/jobs/<{ID}:job_id>")
@spec.validate(resp=responses(HTTP_200=s.JobOut), tags=["jobs"])
@requires(Role.VIEWER)
def get_job(job_id: int):
    """One job."""
    return present.job(job_service.get_job(job_id))


@bp.patch(f"/jobs/<{ID}:job_id>")
@spec.validate(json=s.JobPatch, resp=responses(HTTP_200=s.JobOut), tags=["jobs"])
@requires(Role.OPERATOR)
def update_job(job_id: int):
    """Change a job; fields not given keep their values (``schedule`` replaces the schedules)."""
    body: s.JobPatch = request.context.json
    job = job_service.get_job(job_id)
    if "schedule" in body.model_fields_set:
        _check_schedule(body.schedule)
    changes = _service_fields(body)
    if body.name is not None:
        changes["name"] = body.name
    if changes:
        job = job_service.update_job(job_id, actor=actor(), **changes)
    if "schedule" in body.model_fields_set:
        for old in list(job.schedules):
            schedule_service.delete_schedule(old, actor=actor())
        if body.schedule is not None:
            add_schedule(job, body.schedule)
    return present.job(job_service.get_job(job_id))


@bp.delete(f"/jobs/<{ID}:job_id>")
@spec.validate(resp=responses(HTTP_204=None), tags=["jobs"])
@requires(Role.OPERATOR)
def delete_job(job_id: int):
    """Delete a job (refused while one of its runs is in flight); its runs stay readable."""
    job_service.delete_job(job_id, actor=actor())
    return "", 204


# ------------------------------------------------------------------------------- runs


@bp.post(f"/jobs/<{ID}:job_id>/runs")
@spec.validate(
    json=s.RunStart, query=s.RunStartQuery, resp=responses(HTTP_201=s.RunDetail), tags=["runs"]
)
@requires(Role.OPERATOR)
def start_run(job_id: int):
    """Start a run: queued, at ``schedule_at``, after ``depends_on_runs``, or ``now`` here.

    ``?wait=SECONDS`` answers once the run has ended (or the time is up).
    """
    body: s.RunStart = request.context.json
    wait: float | None = request.context.query.wait
    job = job_service.get_job(job_id)
    if body.now:
        return _run_now(job, body), 201
    options: dict[str, Any] = {
        "triggered_by": f"api:{actor().username}",
        "actor": actor(),
        "schedule_at": body.schedule_at,
        "depends_on_runs": body.depends_on_runs,
    }
    if body.devices is not None:
        options["device_ids"] = device_ids(list(body.devices), "devices")
    run = runs.start_run(job, **options)
    run_id = run.id
    if wait:
        _wait_for_end(run_id, wait)
    return run_detail(runs.get_run(run_id)), 201


def _wait_for_end(run_id: int, seconds: float) -> None:
    limit = current_app.config.get("ROOKERY_API_MAX_WAIT_SECONDS", DEFAULT_MAX_WAIT_SECONDS)
    deadline = time.monotonic() + min(seconds, limit)
    while time.monotonic() < deadline:
        db.session.commit()  # a fresh snapshot each time, no transaction held open
        if runs.get_run(run_id).run_status.is_final:
            return
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _run_now(job: Any, body: s.RunStart) -> dict[str, Any]:
    """Execute through run_now in this request; the run row says how it went."""
    refused = [
        name for name in ("devices", "schedule_at", "depends_on_runs") if getattr(body, name)
    ]
    if refused:
        raise ValidationError(
            f'"now" runs the whole job here and now; it cannot take {", ".join(refused)}.',
            fields={name: 'Not with "now".' for name in refused},
        )
    if not job.enabled:
        raise Conflict(f"Job {job.name!r} is disabled; enable it before running it.")
    job_service.check_command_policy(job, actor())
    last = db.session.scalar(select(JobRun.id).order_by(JobRun.id.desc()).limit(1)) or 0
    job_id, job_name = job.id, job.name
    outcome: str | None
    try:
        outcome = runs.run_now(job)
    except Exception as exc:
        db.session.rollback()
        run_id = _run_now_row(job_id, last)
        if run_id is None:
            raise
        logger.info("run_now of job %s raised %s", job_name, type(exc).__name__)
        outcome = None
    else:
        run_id = _run_now_row(job_id, last)
        if run_id is None:  # nothing to do (run_now answered before writing a row)
            raise Conflict(f"Job {job_name!r} did not run.")
    detail = run_detail(runs.get_run(run_id))
    detail["outcome"] = outcome
    return detail


def _run_now_row(job_id: int, after_id: int) -> int | None:
    """The run row run_now wrote (it returns the outcome only)."""
    return db.session.scalar(
        select(JobRun.id)
        .where(JobRun.job_id == job_id, JobRun.triggered_by == "run_now", JobRun.id > after_id)
        .order_by(JobRun.id)
        .limit(1)
    )
