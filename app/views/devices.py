"""Device pages: list, create, edit, delete, import/export, config history and diffs; tags."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import func, select

from app import config_store, platforms
from app.auth import require_role
from app.errors import MAX_ID, Conflict, Forbidden, ValidationError
from app.extensions import db
from app.models import Device, Job, Role
from app.services import (
    compliance,
    config_search,
    credential_scope,
    host_keys,
    inventory,
    jobs,
    runs,
)
from app.views.common import form_bool, form_text, is_htmx, query_without, refuse_nul

logger = logging.getLogger(__name__)

bp = Blueprint("devices", __name__, url_prefix="/devices")

PAGE_SIZE = 50
#: the largest import file a form takes (a Nornir inventory of many thousand hosts fits)
MAX_IMPORT_BYTES = 10 * 1024 * 1024
FORM_FIELDS = ("name", "host", "port", "platform", "driver", "notes", "tags")
HISTORY_LIMIT = 100


@bp.app_template_filter("utc_time")
def utc_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored (aware) time shown in UTC, whatever the database session's time zone."""
    return value.astimezone(UTC).strftime(fmt) if value is not None else ""


#: the device list's backup filter: state -> its label (N: the page's ``hours``)
BACKUP_STATES = {
    "stale": "Stale (no success in N h)",
    "failing": "Failing",
    "never": "Never backed up",
    "fresh": "Fresh (a success in N h)",
}
DEFAULT_STALE_HOURS = 24


def _stale_hours() -> int:
    """The page's ``hours`` (what stale and fresh mean), 1 to a year; else 24."""
    try:
        hours = int(request.args.get("hours") or DEFAULT_STALE_HOURS)
    except ValueError:
        return DEFAULT_STALE_HOURS
    return hours if 1 <= hours <= 24 * 365 else DEFAULT_STALE_HOURS


def _form_values() -> dict[str, Any]:
    """The device form as typed (kept on re-render; a NUL byte is shown as removed)."""
    values: dict[str, Any] = {k: form_text(k).replace("\x00", "") for k in FORM_FIELDS}
    values["enabled"] = form_bool("enabled")
    return values


def _refuse_nul() -> None:
    """A NUL byte in any field is a form error (PostgreSQL text cannot hold one)."""
    refuse_nul({k: form_text(k) for k in FORM_FIELDS})


def _service_fields(values: dict[str, Any]) -> dict[str, Any]:
    fields = {k: values[k] for k in FORM_FIELDS if k != "tags"}
    fields["enabled"] = values["enabled"]
    return fields


def _device_values(device: Device) -> dict[str, Any]:
    return {
        "name": device.name,
        "host": device.host,
        "port": device.port,
        "platform": device.platform,
        "driver": device.driver,
        "notes": device.notes,
        "enabled": device.enabled,
        "tags": ", ".join(t.name for t in device.tags),
    }


# ------------------------------------------------------------------------- list


@bp.route("")
@login_required
def index() -> str:
    """Devices by name, filtered by tag and text, one keyset page at a time."""
    tag = (request.args.get("tag") or "").strip()[:64] or None
    search = (request.args.get("q") or "").strip()[:200] or None
    after = request.args.get("after") or None
    before = request.args.get("before") or None
    held = True if request.args.get("held") == "1" else None
    backup = request.args.get("backup") or None
    if backup not in (None, *BACKUP_STATES):
        backup = None
    sort = request.args.get("sort") or "name"
    if sort not in inventory.DEVICE_SORTS:
        sort = "name"
    stale_hours = _stale_hours()
    query = inventory.list_devices(
        tag=tag, search=search, held=held, backup=backup, sort=sort, stale_hours=stale_hours
    )
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    try:
        if before:
            rows = list(
                db.session.scalars(
                    inventory.page_from(query, sort, before, back=True).limit(PAGE_SIZE + 1)
                )
            )
            has_more_before = len(rows) > PAGE_SIZE
            devices = list(reversed(rows[:PAGE_SIZE]))
            has_more_after = True
        else:
            if after:
                query = inventory.page_from(query, sort, after, back=False)
            rows = list(db.session.scalars(query.limit(PAGE_SIZE + 1)))
            devices = rows[:PAGE_SIZE]
            has_more_after = len(rows) > PAGE_SIZE
            has_more_before = bool(after)
    except ValidationError:  # a cursor edited by hand: the first page
        devices = list(db.session.scalars(query.limit(PAGE_SIZE)))
        has_more_after, has_more_before = len(devices) == PAGE_SIZE, False
    next_url = prev_url = None
    if devices and has_more_after:
        cursor = inventory.device_cursor(devices[-1], sort)
        next_url = url_for(".index", **query_without(after=cursor, before=None))
    if devices and has_more_before:
        cursor = inventory.device_cursor(devices[0], sort)
        prev_url = url_for(".index", **query_without(before=cursor, after=None))
    context = {
        "devices": devices,
        "total": total,
        "tag": tag,
        "search": search or "",
        "held": bool(held),
        "backup": backup,
        "backup_states": BACKUP_STATES,
        "sort": sort,
        "stale_hours": stale_hours,
        "sort_urls": {
            "name": url_for(".index", **query_without(sort=None, after=None, before=None)),
            "last_backup": url_for(
                ".index",
                **query_without(
                    sort="-last_backup" if sort == "last_backup" else "last_backup",
                    after=None,
                    before=None,
                ),
            ),
        },
        "tags": [t for t, _ in db.session.execute(inventory.list_tags())],
        "next_url": next_url,
        "prev_url": prev_url,
    }
    if _wants_partial():
        return render_template("devices/_device_list.html", **context)
    return render_template("devices/index.html", **context)


# --------------------------------------------------------------- create / edit


@bp.route("/new", methods=["GET", "POST"])
@require_role(Role.OPERATOR)
def create() -> str | Response | tuple[str, int]:
    """The new-device form; saves on POST."""
    if request.method == "GET":
        values = {"port": inventory.DEFAULT_PORT, "driver": inventory.DEFAULT_DRIVER}
        return render_template("devices/form.html", device=None, values=values | {"enabled": True})
    values = _form_values()
    try:
        _refuse_nul()
        device = inventory.create_device(
            actor=current_user,
            tags=inventory.split_tags(values["tags"]),
            **_service_fields(values),
        )
    except ValidationError as exc:
        return _form_again(None, values, exc.message, exc.fields, 422)
    except Conflict as exc:
        return _form_again(None, values, exc.message, {"name": exc.message}, 409)
    flash(f"Device {device.name} created.", "success")
    _flash_hold(device)
    return redirect(url_for(".show", device_id=device.id))


@bp.route("/<int:device_id>/edit", methods=["GET", "POST"])
@require_role(Role.OPERATOR)
def edit(device_id: int) -> str | Response | tuple[str, int]:
    """The edit form of a device; saves on POST."""
    device = inventory.get_device(device_id)
    if request.method == "GET":
        return render_template("devices/form.html", device=device, values=_device_values(device))
    values = _form_values()
    try:
        _refuse_nul()
        device = inventory.update_device(
            device_id,
            actor=current_user,
            **_service_fields(values),
            tags=inventory.split_tags(values["tags"]),
        )
    except ValidationError as exc:
        return _form_again(device, values, exc.message, exc.fields, 422)
    except Conflict as exc:
        return _form_again(device, values, exc.message, {}, 409)
    flash(f"Device {device.name} saved.", "success")
    _flash_hold(device)
    return redirect(url_for(".show", device_id=device.id))


def _flash_hold(device: Device) -> None:
    if device.credential_hold:
        flash(
            f"No credential will be sent to {device.name} until an admin approves it: "
            f"{device.credential_hold}.",
            "error",
        )


@bp.route("/<int:device_id>/backup", methods=["POST"])
@require_role(Role.OPERATOR)
def backup_now(device_id: int) -> Response:
    """Back up this device now: a run of a config backup job, for this device alone."""
    device = inventory.get_device(device_id)
    job = jobs.backup_job_for(device)
    if job is None:
        flash("No config backup job yet: create one (Jobs, New job, Config backup).", "error")
        return redirect(url_for(".show", device_id=device_id))
    return _run_for_device(job, device)


@bp.route("/<int:device_id>/run", methods=["POST"])
@require_role(Role.OPERATOR)
def run_job(device_id: int) -> Response:
    """Run the chosen device job on this device alone."""
    device = inventory.get_device(device_id)
    raw = request.form.get("job_id", "")
    job = db.session.get(Job, int(raw)) if raw.isdigit() and 0 < int(raw) <= MAX_ID else None
    if job is None:
        flash("Choose a job to run.", "error")
        return redirect(url_for(".show", device_id=device_id))
    return _run_for_device(job, device)


def _run_for_device(job: Job, device: Device) -> Response:
    try:
        run = runs.start_run(
            job,
            triggered_by=f"user:{current_user.username}",
            actor=current_user,
            device_ids=[device.id],
        )
    except (Conflict, ValidationError, Forbidden) as exc:
        flash(exc.message, "error")
        return redirect(url_for(".show", device_id=device.id))
    flash(f"Run #{run.id} of {job.name} on {device.name} queued.", "success")
    return redirect(url_for("runs.detail", run_id=run.id))


@bp.route("/<int:device_id>/approve-credentials", methods=["POST"])
@require_role(Role.ADMIN)
def approve_credentials(device_id: int) -> Response:
    """Approve where a held device's credentials go; runs send them again."""
    device = inventory.get_device(device_id)
    if credential_scope.approve([device.id], actor=current_user):
        flash(
            f"Approved: {device.name}'s credentials go to {device.host}:{device.port} again.",
            "success",
        )
    return redirect(url_for(".show", device_id=device_id))


def _form_again(
    device: Device | None, values: dict[str, Any], message: str, errors: dict[str, str], status: int
) -> tuple[str, int]:
    return (
        render_template(
            "devices/form.html", device=device, values=values, errors=errors, message=message
        ),
        status,
    )


@bp.route("/<int:device_id>/delete", methods=["POST"])
@require_role(Role.OPERATOR)
def delete(device_id: int) -> Response:
    """Delete a device (refused while a run in flight targets it)."""
    device = inventory.get_device(device_id)
    name = device.name
    try:
        inventory.delete_device(device_id, actor=current_user)
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect(url_for(".show", device_id=device_id))
    flash(f"Device {name} deleted; its config history and results stay readable.", "success")
    return redirect(url_for(".index"))


# ------------------------------------------------------------------ host keys


@bp.route("/<int:device_id>/host-key/accept", methods=["POST"])
@require_role(Role.ADMIN)
def accept_host_key(device_id: int) -> Response:
    """Pin the device's pending host key; the form names the fingerprint the admin saw."""
    try:
        device = host_keys.accept_pending(
            device_id, actor=current_user, fingerprint=form_text("fingerprint") or None
        )
    except Conflict as exc:
        flash(exc.message, "error")
        return redirect(url_for(".show", device_id=device_id))
    key = device.pinned_host_key
    flash(f"Host key {key.fingerprint if key else ''} accepted for {device.name}.", "success")
    return redirect(url_for(".show", device_id=device_id))


@bp.route("/<int:device_id>/host-key/set", methods=["POST"])
@require_role(Role.ADMIN)
def set_host_key(device_id: int) -> Response:
    """Pin the public key an admin pasted (``<type> <base64>``)."""
    try:
        device = host_keys.set_key(device_id, form_text("key"), actor=current_user)
    except ValidationError as exc:
        flash(exc.message, "error")
        return redirect(url_for(".show", device_id=device_id))
    key = device.pinned_host_key
    flash(f"Host key {key.fingerprint if key else ''} pinned for {device.name}.", "success")
    return redirect(url_for(".show", device_id=device_id))


@bp.route("/<int:device_id>/host-key/forget", methods=["POST"])
@require_role(Role.ADMIN)
def forget_host_key(device_id: int) -> Response:
    """Unpin the device's host key: the next connection learns it again."""
    device = host_keys.forget(device_id, actor=current_user)
    flash(f"Host key of {device.name} forgotten; the next connection learns it.", "success")
    return redirect(url_for(".show", device_id=device_id))


# --------------------------------------------------------------- device page


def _store() -> config_store.GitConfigStore:
    return config_store.store_for(current_app)


def _history(name: str) -> tuple[list[config_store.Version], str | None]:
    """The device's config versions, or an error message if the store cannot be read."""
    try:
        return _store().history(name, limit=HISTORY_LIMIT), None
    except config_store.ConfigStoreError as exc:
        logger.warning("Config history of %s unreadable: %s", name, exc)
        return [], f"The config history cannot be read: {exc.message}"


@bp.route("/<int:device_id>")
@login_required
def show(device_id: int) -> str:
    """One device: its fields, its config history with a diff picker, its recent results."""
    device = inventory.get_device(device_id)
    history, history_error = _history(device.name)
    results = list(db.session.execute(inventory.recent_results(device.id)))
    return render_template(
        "devices/show.html",
        device_jobs=jobs.device_jobs(),
        backup_job=jobs.backup_job_for(device),
        device=device,
        history=history,
        history_error=history_error,
        results=results,
        old=history[1].sha if len(history) > 1 else None,
        new=history[0].sha if history else None,
        compliance_results=compliance.device_results(device.id),
        compliance_history=compliance.device_history(device.id, limit=50),
        compliance_commit=config_search.latest_commit(device.id),
    )


@bp.route("/<int:device_id>/config/<sha>")
@login_required
def config_version(device_id: int, sha: str) -> str | tuple[str, int]:
    """The device's stored config at one version."""
    device = inventory.get_device(device_id)
    try:
        text = _store().read(device.name, sha)
    except config_store.ConfigStoreError as exc:
        return _no_version(exc.message)
    if text is None:
        return _no_version(f"Device {device.name} had no stored config at version {sha[:12]}.")
    return render_template("devices/config.html", device=device, sha=sha, text=text)


def _no_version(message: str) -> tuple[str, int]:
    return render_template("error.html", status=404, title="Not Found", message=message), 404


@bp.route("/<int:device_id>/diff")
@login_required
def diff(device_id: int) -> str | tuple[str, int]:
    """A diff of the device's config between two of its versions; the URL names them
    (``old``, ``new``; ``old`` defaults to the version before ``new``), the view
    (``view=split|unified``) and the context (3 lines unless ``context=all``)."""
    device = inventory.get_device(device_id)
    history, history_error = _history(device.name)
    old = (request.args.get("old") or "").strip()[:64]
    new = (request.args.get("new") or "").strip()[:64]
    view = "unified" if request.args.get("view") == "unified" else "split"
    full = request.args.get("context") == "all"
    rows: list[config_store.DiffRow] = []
    error = history_error
    status = 200
    if not error:
        error, status, old, new = _check_versions(device.name, old, new)
    if not error:
        try:
            rows = _store().diff(device.name, old, new) if old else _first_version(device, new)
        except config_store.ConfigStoreError as exc:
            error, status = exc.message, 404
    context = {
        "device": device,
        "history": history,
        "old": old,
        "new": new,
        "view": view,
        "full": full,
        "rows": config_store.with_context(rows, None if full else DIFF_CONTEXT),
        "changes": sum(1 for r in rows if r.kind != "equal"),
        "inline": config_store.inline_changes,
        "error": error,
    }
    if _wants_partial():
        return render_template("devices/_config_diff.html", **context), status
    return render_template("devices/diff.html", **context), status


#: unchanged lines shown around each change unless ``context=all``
DIFF_CONTEXT = 3


def _check_versions(name: str, old: str, new: str) -> tuple[str | None, int, str, str]:
    """Both versions must be versions of this device (commits that changed its config):
    (error, status, old, new) with full shas; ``old`` empty means "the one before new"."""
    if not new:
        return "Choose two versions to compare.", 400, old, new
    versions = _store().history(name, limit=100_000)
    shas = [v.sha for v in versions]

    def find(sha: str) -> str | None:
        if len(sha) < 7:
            return None
        return next((full for full in shas if full.startswith(sha.lower())), None)

    full_new = find(new)
    if full_new is None:
        return f"{new[:12]} is not a version of {name}'s config.", 404, old, new
    if not old:
        index = shas.index(full_new)
        return None, 200, shas[index + 1] if index + 1 < len(shas) else "", full_new
    full_old = find(old)
    if full_old is None:
        return f"{old[:12]} is not a version of {name}'s config.", 404, old, full_new
    return None, 200, full_old, full_new


def _first_version(device: Device, sha: str) -> list[config_store.DiffRow]:
    """A device's first stored version shown as a diff against nothing."""
    text = _store().read(device.name, sha) or ""
    return config_store.side_by_side([], text.splitlines())


@bp.route("/<int:device_id>/config/<sha>/download")
@login_required
def config_download(device_id: int, sha: str) -> Response | tuple[str, int]:
    """The device's config at one version, as a file."""
    device = inventory.get_device(device_id)
    try:
        text = _store().read(device.name, sha)
    except config_store.ConfigStoreError as exc:
        return _no_version(exc.message)
    if text is None:
        return _no_version(f"Device {device.name} had no stored config at version {sha[:12]}.")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in device.name)
    response = Response(text, mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="{safe}-{sha[:12]}.txt"'
    return response


# ------------------------------------------------------------------ import / export


#: the sample files an import starts from: the URL's file name -> the file downloaded
SAMPLES = {
    "sample.csv": "devices.csv",
    "sample-hosts.yaml": "hosts.yaml",
    "sample-groups.yaml": "groups.yaml",
}


@bp.route("/import", methods=["GET", "POST"])
@require_role(Role.OPERATOR)
def import_devices() -> str | Response | tuple[str, int]:
    """Import devices from CSV or a Nornir inventory; every bad row shown by its line.

    The page's form posts with HTMX and gets back the result alone, so the files chosen
    stay in the form after an error (a reloaded page cannot refill a file input). Without
    JavaScript the whole page comes back, naming the files to choose again.
    """
    if request.method == "GET":
        kind = "nornir" if request.args.get("kind") == "nornir" else "csv"
        return _import_page(kind=kind, partial=False, report=None)
    kind = form_text("kind") or "csv"
    partial = form_bool("partial")
    chosen = {name: f.filename for name, f in request.files.items() if f.filename}
    context: dict[str, Any] = {"kind": kind, "partial": partial, "report": None, "chosen": chosen}
    try:
        if kind == "csv":
            data = _upload("csv_file", required=True, label="a CSV file")
            report = inventory.import_csv(data or b"", partial=partial, actor=current_user)
        elif kind == "nornir":
            hosts = _upload("hosts_file", required=True, label="hosts.yaml")
            report = inventory.import_nornir(
                hosts or b"",
                _upload("groups_file"),
                _upload("defaults_file"),
                partial=partial,
                actor=current_user,
            )
        else:
            raise ValidationError(
                "Choose CSV or Nornir YAML.", fields={"kind": "Choose CSV or Nornir YAML."}
            )
    except ValidationError as exc:
        return _import_page(**context, message=exc.message, errors=exc.fields), 422
    context["report"] = report
    if report.errors and not (partial and (report.created or report.updated or report.unchanged)):
        message = (
            f"Nothing was imported: {len(report.errors)} bad row(s). Fix them, or tick "
            "“Import only the good rows”."
            if not partial
            else f"No good row to import: {len(report.errors)} bad row(s)."
        )
        return _import_page(**context, message=message), 422
    return _import_page(**context)


def _import_page(**context: Any) -> str:
    """The import page, or only its result when the page's form asked with HTMX."""
    if is_htmx():
        return render_template("devices/_import_result.html", **context)
    return render_template(
        "devices/import.html",
        **context,
        profiled_platforms=platforms.PROFILED,
        valid_platforms=sorted(inventory.netmiko_platforms()),
    )


def _upload(name: str, *, required: bool = False, label: str = "") -> bytes | None:
    """The bytes of an uploaded file (None when none was chosen); too big is refused."""
    upload = request.files.get(name)
    if upload is None or not upload.filename:
        if required:
            raise ValidationError(f"Choose {label} to import.", fields={name: "Choose a file."})
        return None
    data = upload.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        limit = MAX_IMPORT_BYTES // (1024 * 1024)
        raise ValidationError(
            f"{upload.filename} is larger than {limit} MB.", fields={name: f"At most {limit} MB."}
        )
    return data


@bp.route("/import/<any('sample.csv', 'sample-hosts.yaml', 'sample-groups.yaml'):sample>")
@login_required
def import_sample(sample: str) -> Response:
    """A sample file of the import's format (devices.csv, hosts.yaml, groups.yaml)."""
    file_name = SAMPLES[sample]
    mimetype = "text/csv" if file_name.endswith(".csv") else "application/yaml"
    return _download(inventory.SAMPLE_FILES[file_name], file_name, mimetype)


@bp.route("/export.csv")
@login_required
def export_csv() -> Response:
    """Every device as a CSV file the import takes back."""
    return _download(inventory.export_csv(), "devices.csv", "text/csv")


@bp.route("/export/<any('hosts.yaml', 'groups.yaml'):file_name>")
@login_required
def export_nornir(file_name: str) -> Response:
    """hosts.yaml or groups.yaml of a Nornir SimpleInventory of every device."""
    return _download(inventory.export_nornir()[file_name], file_name, "application/yaml")


def _download(body: str, file_name: str, mimetype: str) -> Response:
    return Response(
        body,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{file_name}"'},
    )


# -------------------------------------------------------------------------- tags


@bp.route("/tags")
@login_required
def tags() -> str:
    """Every tag with the number of devices carrying it."""
    return render_template(
        "devices/tags.html", tags=list(db.session.execute(inventory.list_tags()))
    )


@bp.route("/tags/<int:tag_id>/rename", methods=["POST"])
@require_role(Role.OPERATOR)
def rename_tag(tag_id: int) -> Response | tuple[str, int]:
    """Rename a tag; devices, jobs and credentials carrying it follow."""
    tag = inventory.get_tag(tag_id)
    old_name = tag.name
    new_name = form_text("name")
    try:
        inventory.rename_tag(tag_id, new_name, actor=current_user)
    except (ValidationError, Conflict, Forbidden) as exc:
        status = {ValidationError: 422, Conflict: 409, Forbidden: 403}[type(exc)]
        rows = list(db.session.execute(inventory.list_tags()))
        return render_template(
            "devices/tags.html",
            tags=rows,
            message=exc.message,
            failed_tag=tag_id,
            failed_value=new_name,
        ), status
    flash(f"Tag {old_name} renamed to {new_name}.", "success")
    return redirect(url_for(".tags"))


@bp.route("/tags/<int:tag_id>/delete", methods=["POST"])
@require_role(Role.OPERATOR)
def delete_tag(tag_id: int) -> Response:
    """Delete a tag (refused while jobs or credentials use it)."""
    tag = inventory.get_tag(tag_id)
    name = tag.name
    try:
        inventory.delete_tag(tag_id, actor=current_user)
    except (Conflict, Forbidden) as exc:
        flash(exc.message, "error")
    else:
        flash(f"Tag {name} deleted.", "success")
    return redirect(url_for(".tags"))


def _wants_partial() -> bool:
    """An HTMX swap of the partial; a history restore (cache miss) wants the whole page."""
    return is_htmx() and not request.headers.get("HX-History-Restore-Request")
