"""Jobs: the list, the create/edit form rendered from the job type's params, run now,
enable/disable, delete, and the job's page with its schedule and recent runs."""

from __future__ import annotations

import logging
from datetime import UTC
from types import SimpleNamespace
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from app import registry
from app.auth import require_role
from app.errors import Conflict, Forbidden, NotFound, ValidationError
from app.extensions import db
from app.models import Credential, Job, Priority, Role, Schedule, utcnow
from app.services import inventory, jobs, runs, schedules
from app.views import common

logger = logging.getLogger(__name__)

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

JOBS_PAGE = 100
PRIORITIES = [(p.name.lower(), p.name.capitalize()) for p in Priority]
SCHEDULE_KINDS = [
    ("none", "No schedule"),
    ("interval", "Every N minutes"),
    ("cron", "Cron"),
    ("once", "Once, at a time"),
]


@bp.route("")
@login_required
def index() -> str:
    """Every job with its labels, type, targets, schedule and last run; 100 per page."""
    label = request.args.get("label") or None
    search = request.args.get("q") or None
    page = max(1, common.arg_int("page", 1) or 1)
    query = jobs.list_jobs(label=label, search=search).options(
        selectinload(Job.target_tags),
        selectinload(Job.target_devices),
        selectinload(Job.schedules),  # type: ignore[attr-defined]
    )
    rows = list(db.session.scalars(query.offset((page - 1) * JOBS_PAGE).limit(JOBS_PAGE + 1)))
    more = len(rows) > JOBS_PAGE
    rows = rows[:JOBS_PAGE]
    return render_template(
        "jobs/index.html",
        jobs=rows,
        labels=jobs.all_labels(),
        last_runs=runs.last_runs([job.id for job in rows]),
        describe=schedules.describe,
        next_url=url_for("jobs.index", **common.query_without(page=page + 1)) if more else None,
        prev_url=url_for("jobs.index", **common.query_without(page=page - 1)) if page > 1 else None,
    )


@bp.route("/new")
@require_role(Role.OPERATOR)
def new() -> str:
    """Pick a job type, then fill in its form."""
    types = {name: kind for name, kind in registry.current().types.items() if not kind.internal}
    job_type = request.args.get("job_type")
    if job_type not in types:
        return render_template("jobs/choose_type.html", types=types)
    kind = types[job_type]
    values = _defaults(kind)
    return _render_form(kind, values=values, errors={}, job=None)


@bp.route("/new", methods=["POST"])
@require_role(Role.OPERATOR)
def create() -> Response | tuple[str, int]:
    """Validate and save a new job (and its schedule); errors go next to their fields."""
    types = registry.current().types
    kind = types.get(request.form.get("job_type", ""))
    if kind is None:
        flash("Choose a job type first.", "error")
        return redirect(url_for("jobs.new"))
    values = _form_values(kind)
    try:
        fields = _job_fields(kind, values)
        schedule = _schedule_spec(values)
        job = jobs.create_job(
            name=values["name"], job_type=kind.job_type, actor=current_user, **fields
        )
    except (ValidationError, Conflict, Forbidden) as exc:
        return _render_form(
            kind, values=values, errors=_errors(exc, kind), job=None, message=exc.message
        ), _status(exc)
    if schedule is not None:
        schedules.create_schedule(job, actor=current_user, **schedule)
    flash(f"Job {job.name!r} created.", "success")
    return redirect(url_for("jobs.detail", job_id=job.id))


@bp.route("/<int:job_id>")
@login_required
def detail(job_id: int) -> str:
    """A job: its definition, schedule, dependencies, webhooks and recent runs."""
    job = _get_job(job_id)
    recent, _ = runs.list_runs(job_id=job.id, limit=20)
    kind = registry.current().types.get(job.job_type)
    return render_template(
        "jobs/detail.html",
        job=job,
        kind=kind,
        recent=recent,
        job_schedules=list(db.session.scalars(schedules.list_schedules(job.id))),
        describe=schedules.describe,
        webhooks=_webhooks(job.id),
        shown_params=_shown_params(job, kind),
    )


@bp.route("/<int:job_id>/edit")
@require_role(Role.OPERATOR)
def edit(job_id: int) -> str:
    """The job's form, filled in (secret parameters left empty: empty keeps them)."""
    job = _get_job(job_id)
    kind = _kind_of(job)
    return _render_form(kind, values=_values_of(job, kind), errors={}, job=job)


@bp.route("/<int:job_id>/edit", methods=["POST"])
@require_role(Role.OPERATOR)
def update(job_id: int) -> Response | tuple[str, int]:
    """Save changes to a job and its schedule; nothing is saved when anything is wrong."""
    job = _get_job(job_id)
    kind = _kind_of(job)
    values = _form_values(kind)
    try:
        fields = _job_fields(kind, values)
        schedule = _schedule_spec(values)
        jobs.update_job(job.id, actor=current_user, name=values["name"], **fields)
    except (ValidationError, Conflict, Forbidden) as exc:
        job = _get_job(job_id)
        return _render_form(
            kind, values=values, errors=_errors(exc, kind), job=job, message=exc.message
        ), _status(exc)
    existing = list(db.session.scalars(schedules.list_schedules(job.id)))
    if schedule is None:
        for old in existing:
            schedules.delete_schedule(old, actor=current_user)
    elif existing:
        schedules.update_schedule(existing[0], actor=current_user, **schedule)
    else:
        schedules.create_schedule(job, actor=current_user, **schedule)
    flash(f"Job {values['name']!r} saved.", "success")
    return redirect(url_for("jobs.detail", job_id=job_id))


@bp.route("/<int:job_id>/run", methods=["POST"])
@require_role(Role.OPERATOR)
def run_now(job_id: int) -> Response:
    """Queue a run of the job now and show it."""
    job = _get_job(job_id)
    try:
        run = runs.start_run(job, triggered_by=f"user:{current_user.username}", actor=current_user)
    except (Conflict, ValidationError, Forbidden) as exc:
        flash(exc.message, "error")
        return redirect(request.referrer or url_for("jobs.detail", job_id=job_id))
    flash(f"Run #{run.id} of {job.name} queued.", "success")
    return redirect(url_for("runs.detail", run_id=run.id))


@bp.route("/<int:job_id>/enabled", methods=["POST"])
@require_role(Role.OPERATOR)
def set_enabled(job_id: int) -> Response:
    """Enable or disable a job (a disabled job's schedules do not start runs)."""
    job = _get_job(job_id)
    enabled = request.form.get("enabled") == "1"
    jobs.set_enabled(job.id, enabled, actor=current_user)
    flash(f"Job {job.name!r} {'enabled' if enabled else 'disabled'}.", "success")
    return redirect(request.referrer or url_for("jobs.detail", job_id=job_id))


@bp.route("/<int:job_id>/delete", methods=["POST"])
@require_role(Role.OPERATOR)
def delete(job_id: int) -> Response:
    """Delete a job; refused while a run of it is in flight. Its runs stay readable."""
    job = _get_job(job_id)
    try:
        jobs.delete_job(job.id, actor=current_user)
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect(url_for("jobs.detail", job_id=job_id))
    flash(f"Job {job.name!r} deleted; its runs stay in the history.", "success")
    return redirect(url_for("jobs.index"))


# -- the form ---------------------------------------------------------------------------


@bp.route("/schedule-preview")
@login_required
def schedule_preview() -> str:
    """The next three fire times of the schedule being typed, in its zone (the form asks
    as one types); or why it is not a schedule yet."""
    values = {
        name: (request.args.get(name) or "").strip()[:200]
        for name in ("schedule_kind", "interval_minutes", "cron", "timezone", "run_at")
    }
    return render_template("jobs/_next_fires.html", **_upcoming(values))


def _upcoming(values: dict[str, Any]) -> dict[str, Any]:
    """What ``_next_fires.html`` shows for the schedule fields in ``values``."""
    shown: dict[str, Any] = {"fires": [], "error": None, "zone": None, "utc": UTC}
    if values.get("schedule_kind") in (None, "", "none"):
        return shown
    now = utcnow()
    try:
        spec = _schedule_spec(values)
    except ValidationError as exc:
        shown["error"] = next(iter(exc.fields.values())) if exc.fields else exc.message
        return shown
    if spec is None:
        return shown
    probe = Schedule(created_at=now, enabled=True, **spec)
    zone = schedules.zone(spec["timezone"])
    shown["fires"] = [fire.astimezone(zone) for fire in schedules.upcoming(probe, now)]
    shown["zone"] = spec["timezone"]
    return shown


@bp.route("/targets-preview")
@login_required
def targets_preview() -> str:
    """How many devices the targets being typed match, and the tags and names that match
    nothing (with a suggestion)."""
    tags = common.split_names((request.args.get("target_tags") or "")[:2000])
    names = common.split_names((request.args.get("target_devices") or "")[:20000])
    preview = inventory.preview_targets(tags, names)
    return render_template("jobs/_targets_preview.html", preview=preview, given=bool(tags or names))


def _render_form(
    kind: registry.JobType,
    *,
    values: dict[str, Any],
    errors: dict[str, str],
    job: Job | None,
    message: str | None = None,
) -> str:
    other_jobs = db.session.execute(
        select(Job.id, Job.name).where(Job.id != (job.id if job else -1)).order_by(Job.name)
    ).all()
    credential_names = list(db.session.scalars(select(Credential.name).order_by(Credential.name)))
    suggested = None
    if kind.default_schedule:
        suggested = "Suggested for this job type: " + schedules.describe(
            SimpleNamespace(**schedules.default_schedule_for(kind.job_type) or {})
        )
    return render_template(
        "jobs/form.html",
        kind=kind,
        job=job,
        values=values,
        errors=errors,
        message=message,
        priorities=PRIORITIES,
        schedule_kinds=SCHEDULE_KINDS,
        job_options=[(str(row.id), row.name) for row in other_jobs],
        credential_options=[(name, name) for name in credential_names],
        suggested=suggested,
        **_upcoming(values if not errors else {}),
    )


def _defaults(kind: registry.JobType) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": "",
        "description": "",
        "labels": "",
        "target_tags": "",
        "target_devices": "",
        "priority": "normal",
        "no_overlap": kind.targets == "devices",
        "enabled": True,
        "depends_on": [],
        "credentials": [],
        "schedule_kind": "none",
        "timezone": "UTC",
    }
    for spec in kind.params:
        default = spec.default
        if spec.type == "list" and default:
            default = "\n".join(str(v) for v in default)
        values[f"p_{spec.name}"] = "" if default is None or spec.secret else default
    # The job type's suggested schedule is a hint next to the field, never preselected:
    # a test job must not quietly become a nightly one.
    return values


def _values_of(job: Job, kind: registry.JobType) -> dict[str, Any]:
    from app import crypto

    params = crypto.reveal_params(job.params or {})
    values: dict[str, Any] = {
        "name": job.name,
        "description": job.description,
        "labels": ", ".join(job.labels),
        "target_tags": ", ".join(t.name for t in job.target_tags),
        "target_devices": ", ".join(d.name for d in job.target_devices),
        "priority": next(
            (n for n, p in Priority.__members__.items() if p == job.priority), str(job.priority)
        ).lower(),
        "max_retries": job.max_retries,
        "retry_delay_seconds": job.retry_delay_seconds,
        "retry_max_delay_seconds": job.retry_max_delay_seconds,
        "timeout_seconds": job.timeout_seconds,
        "max_parallel": job.max_parallel,
        "no_overlap": job.no_overlap,
        "enabled": job.enabled,
        "depends_on": [str(d.id) for d in job.depends_on],
        "credentials": [c.name for c in job.credentials],
        "schedule_kind": "none",
        "timezone": "UTC",
    }
    for spec in kind.params:
        value = params.get(spec.name)
        if spec.secret:
            value = ""  # never echoed back: left empty, the stored value stays
        elif spec.type == "list" and isinstance(value, list):
            value = "\n".join(str(v) for v in value)
        values[f"p_{spec.name}"] = "" if value is None else value
    existing = db.session.scalars(schedules.list_schedules(job.id)).first()
    if existing is not None:
        values.update(
            schedule_kind=existing.kind,
            interval_minutes=existing.interval_minutes,
            cron=existing.cron,
            timezone=existing.timezone,
            run_at=existing.run_at.astimezone(schedules.zone(existing.timezone)).strftime(
                "%Y-%m-%dT%H:%M"
            )
            if existing.run_at
            else "",
        )
    return values


def _form_values(kind: registry.JobType) -> dict[str, Any]:
    """What the person typed, kept as typed (to re-render the form on an error)."""
    form = request.form
    values: dict[str, Any] = {
        name: common.form_text(name)
        for name in (
            "name",
            "description",
            "labels",
            "target_tags",
            "target_devices",
            "priority",
            "max_retries",
            "retry_delay_seconds",
            "retry_max_delay_seconds",
            "timeout_seconds",
            "max_parallel",
            "schedule_kind",
            "interval_minutes",
            "cron",
            "timezone",
            "run_at",
        )
    }
    values["no_overlap"] = common.form_bool("no_overlap")
    values["enabled"] = common.form_bool("enabled")
    values["depends_on"] = form.getlist("depends_on")
    values["credentials"] = form.getlist("credentials")
    for spec in kind.params:
        key = f"p_{spec.name}"
        values[key] = common.form_bool(key) if spec.type == "boolean" else form.get(key, "")
    return values


def _check_target_tags(tags: list[str], device_ids: list[int]) -> None:
    """A device job saved from the form names targets, and tags that exist: a typo would
    otherwise only show when the run finds no device."""
    if not tags and not device_ids:
        raise ValidationError(
            "A device job needs targets: device tags, device names or both.",
            fields={"target_tags": "Give device tags or device names."},
        )
    unknown = inventory.preview_targets(tags, []).unknown_tags
    if unknown:
        said = "; ".join(
            f"no tag named {tag!r}" + (f" (did you mean {close!r}?)" if close else "")
            for tag, close in unknown
        )
        raise ValidationError(
            f"Unknown tags: {said}.", fields={"target_tags": said[0].upper() + said[1:] + "."}
        )


def _job_fields(kind: registry.JobType, values: dict[str, Any]) -> dict[str, Any]:
    """The service's fields from the form values; unknown device names are field errors."""
    common.refuse_nul(values)
    # A list parameter's textarea goes as typed: the registry splits it into lines.
    params = {spec.name: values[f"p_{spec.name}"] for spec in kind.params}
    device_ids: list[int] = []
    missing: list[str] = []
    for name in common.split_names(values["target_devices"]):
        try:
            device_ids.append(inventory.get_by_name(name).id)
        except NotFound:
            missing.append(name)
    if missing:
        raise ValidationError(
            f"Unknown devices: {', '.join(missing)}.",
            fields={"target_devices": f"Unknown: {', '.join(missing)}"},
        )
    if kind.targets == "devices":
        _check_target_tags(common.split_names(values["target_tags"]), device_ids)
    depends = []
    for value in values["depends_on"]:
        try:
            depends.append(int(value))
        except ValueError:
            raise ValidationError(
                "Unknown job to depend on.", fields={"depends_on": "Unknown job."}
            ) from None
    return {
        "params": params,
        "description": values["description"],
        "labels": common.split_names(values["labels"]),
        "target_tags": common.split_names(values["target_tags"]),
        "target_device_ids": device_ids,
        "credential_names": values["credentials"],
        "priority": values["priority"],
        "max_retries": values["max_retries"],
        "retry_delay_seconds": values["retry_delay_seconds"],
        "retry_max_delay_seconds": values["retry_max_delay_seconds"],
        "timeout_seconds": values["timeout_seconds"],
        "max_parallel": values["max_parallel"],
        "no_overlap": values["no_overlap"],
        "enabled": values["enabled"],
        "depends_on_job_ids": depends,
    }


def _schedule_spec(values: dict[str, Any]) -> dict[str, Any] | None:
    """The schedule the form asks for (validated now, so a bad one saves nothing), or None."""
    kind = values.get("schedule_kind") or "none"
    if kind == "none":
        return None
    spec = schedules.validate(
        kind,
        values.get("interval_minutes"),
        values.get("cron"),
        values.get("timezone") or "UTC",
        values.get("run_at") or None,
        utcnow(),
    )
    return {
        "kind": spec.kind,
        "interval_minutes": spec.interval_minutes,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "run_at": spec.run_at,
    }


def _status(exc: Exception) -> int:
    """A refused command is a 403 (an admin may save it); any other form error a 422."""
    return 403 if isinstance(exc, Forbidden) else 422


def _errors(exc: Exception, kind: registry.JobType) -> dict[str, str]:
    """Service field errors under the form's field names (parameters are ``p_<name>``)."""
    fields = dict(getattr(exc, "fields", None) or {})
    params = {spec.name for spec in kind.params}
    renamed = {
        "target_device_ids": "target_devices",
        "depends_on_job_ids": "depends_on",
        "kind": "schedule_kind",
    }
    out: dict[str, str] = {}
    for key, message in fields.items():
        key = f"p_{key}" if key in params else renamed.get(key, key)
        out[key] = message
    if isinstance(exc, Conflict) and "already exists" in str(exc):
        out["name"] = str(exc)
    return out


# -- helpers --------------------------------------------------------------------------


def _get_job(job_id: int) -> Job:
    try:
        return jobs.get_job(job_id)
    except NotFound:
        abort(404)


def _kind_of(job: Job) -> registry.JobType:
    kind = registry.current().types.get(job.job_type)
    if kind is None:
        abort(409, f"Job type {job.job_type!r} is not registered in this process.")
    return kind


def _shown_params(job: Job, kind: registry.JobType | None) -> dict[str, Any]:
    from app import crypto

    secret = kind.secret_params if kind else ()
    return crypto.redact_params(job.params or {}, secret)


def _webhooks(job_id: int) -> list[Any]:
    from app.services import webhooks

    return list(webhooks.list_webhooks(job_id))
