"""Change set pages: the list, the form (new and edit, app/views/change_form.py reads
it), and a change's page with its per-device preview (from backups, or live), its
review (submit, approve, reject), its Apply and its live rollout."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.auth import require_role
from app.errors import Conflict, Forbidden, ValidationError
from app.models import Change, ChangeDeviceState, ChangeStatus, Role
from app.services import changes, rollouts
from app.views import change_form
from app.views.common import form_bool, refuse_nul

logger = logging.getLogger(__name__)

bp = Blueprint("changes", __name__, url_prefix="/changes")

#: how often the rollout section asks for its devices' states while the change applies
ROLLOUT_POLL = "every 2s"


@bp.route("")
@login_required
def index() -> str:
    """Every change set, newest first, with its status as people read it."""
    found = changes.list_changes()
    return render_template(
        "changes/index.html",
        changes=found,
        statuses={change.id: rollouts.status_of(change) for change in found},
    )


#: the form's fields: the service's, with target devices typed by name
FORM_FIELDS = tuple(
    "target_devices" if name == "target_device_ids" else name
    for name in changes.FIELDS
    if name != "reachability"  # a checkbox (form_bool)
)


#: a new change's rollout: one canary, waves of ten, stop at the first failure
NEW_CHANGE = {
    "canary": 1,
    "wave_size": 10,
    "pause_seconds": 0,
    "max_failed": 1,
    "rollback": "device",
}


def _form_values() -> dict[str, Any]:
    values: dict[str, Any] = {name: request.form.get(name, "") for name in FORM_FIELDS}
    values["reachability"] = form_bool("reachability")
    return values


def _form(values: dict[str, Any], change: Change | None = None, **context: Any) -> str:
    return render_template("changes/form.html", values=values, change=change, **context)


@bp.route("/new", methods=["GET", "POST"])
@require_role(Role.OPERATOR)
def create() -> str | Response | tuple[str, int]:
    """The new-change form; saves a draft on POST."""
    if request.method == "GET":
        return _form(
            {
                "canary": 1,
                "wave_size": 10,
                "pause_seconds": 0,
                "max_failed": 1,
                "rollback": "device",
            }
        )
    values = _form_values()
    try:
        refuse_nul(values)
        change = changes.create_change(actor=current_user, **change_form.fields_of(values))
    except (ValidationError, Conflict) as exc:
        return _form(values, errors=_field_errors(exc), message=exc.message), _code(exc)
    flash(f"Change {change.name} drafted: preview it, then submit it for approval.", "success")
    return redirect(url_for(".show", change_id=change.id))


@bp.route("/<int:change_id>/edit", methods=["GET", "POST"])
@require_role(Role.OPERATOR)
def edit(change_id: int) -> str | Response | tuple[str, int]:
    """Edit a change; editing what it does makes it a draft again (its approval goes)."""
    change = changes.get_change(change_id)
    if request.method == "GET":
        return _form(change_form.values_of(change), change)
    values = _form_values()
    try:
        refuse_nul(values)
        change = changes.update_change(
            change_id, actor=current_user, **change_form.fields_of(values)
        )
    except (ValidationError, Conflict) as exc:
        return _form(values, change, errors=_field_errors(exc), message=exc.message), _code(exc)
    flash(f"Change {change.name} saved (version {change.version}).", "success")
    return redirect(url_for(".show", change_id=change.id))


def _field_errors(exc: ValidationError | Conflict) -> dict[str, str]:
    if isinstance(exc, ValidationError):
        errors = dict(exc.fields)
        if "target_device_ids" in errors:
            errors["target_devices"] = errors.pop("target_device_ids")
        if "targets" in errors:
            errors["target_tags"] = errors.pop("targets")
        return errors
    return {"name": exc.message} if "named" in exc.message else {}


def _code(exc: ValidationError | Conflict) -> int:
    return 422 if isinstance(exc, ValidationError) else 409


@bp.route("/<int:change_id>")
@login_required
def show(change_id: int) -> str:
    """A change: what it pushes where, its review, the per-device preview, the Apply
    and its latest rollout."""
    change = changes.get_change(change_id)
    devices = changes.target_devices(change.target_tags, change.target_device_ids)
    rollout = _rollout(change)
    return render_template(
        "changes/show.html",
        change=change,
        devices=devices,
        rollout=rollout,
        can_apply=change.status == ChangeStatus.APPROVED.value and rollout["status"] != "applying",
        canary=_names(devices[: change.canary]),
        live=_live(change.id),
        variables=changes.shown_variables(change),
    )


def _live(change_id: int) -> dict[str, Any]:
    run, items = rollouts.live_preview(change_id)
    final = bool(run and run.run_status.is_final)
    return {
        "change_id": change_id,
        "run": run,
        "previews": items,
        "poll": None if run is None or final else ROLLOUT_POLL,
    }


@bp.route("/<int:change_id>/preview/live")
@login_required
def live_preview(change_id: int) -> str:
    """The live preview section alone (polled while its run goes on)."""
    changes.get_change(change_id)
    return render_template("changes/_live_preview.html", live=_live(change_id))


@bp.route("/<int:change_id>/preview/live", methods=["POST"])
@require_role(Role.OPERATOR)
def start_live_preview(change_id: int) -> Response:
    """Start a run that previews the change on each device's running config."""
    try:
        run = rollouts.start_live_preview(change_id, actor=current_user)
    except (ValidationError, Conflict, Forbidden) as exc:
        flash(exc.message, "error")
        return redirect(url_for(".show", change_id=change_id))
    flash(f"Run #{run.id} fetches each device's running config (read only).", "success")
    return redirect(url_for(".show", change_id=change_id, _anchor="live-preview"))


@bp.route("/<int:change_id>/rollout")
@login_required
def rollout(change_id: int) -> str:
    """The rollout section alone (a fragment polled while the change applies; it comes
    back without its trigger once the run ended, which stops the polling)."""
    change = changes.get_change(change_id)
    return render_template("changes/_rollout.html", rollout=_rollout(change), fragment=True)


@bp.route("/<int:change_id>/preview")
@login_required
def preview(change_id: int) -> str:
    """The per-device preview (a fragment): commands, what really changes, the diff."""
    return render_template("changes/_preview.html", previews=changes.preview(change_id))


@bp.route("/<int:change_id>/<any('submit', 'approve', 'reject'):action>", methods=["POST"])
@require_role(Role.OPERATOR)
def review(change_id: int, action: str) -> Response:
    """Submit a draft, or approve or reject a submitted change."""
    note = (request.form.get("note") or "").strip()
    try:
        if action == "submit":
            change = changes.submit(change_id, actor=current_user)
        else:
            change = changes.review(
                change_id, actor=current_user, approve=action == "approve", note=note
            )
    except (ValidationError, Conflict, Forbidden) as exc:
        flash(exc.message, "error")
        return redirect(url_for(".show", change_id=change_id))
    done = {"submit": "submitted for approval", "approve": "approved", "reject": "rejected"}
    flash(f"Change {change.name} {done[action]}.", "success")
    return redirect(url_for(".show", change_id=change_id))


@bp.route("/<int:change_id>/apply", methods=["POST"])
@require_role(Role.OPERATOR)
def apply(change_id: int) -> Response:
    """Apply an approved change: one run, the canary first, then the waves."""
    change = changes.get_change(change_id)
    try:
        run = rollouts.start(change.id, actor=current_user)
    except (ValidationError, Conflict, Forbidden) as exc:
        flash(exc.message, "error")
        return redirect(url_for(".show", change_id=change_id))
    flash(
        f"Change {change.name} is being applied by run #{run.id}: its devices' states "
        "follow below.",
        "success",
    )
    return redirect(url_for(".show", change_id=change_id, _anchor="rollout"))


# ------------------------------------------------------------------ the rollout

#: the device states that leave a device in a state nobody knows or wants: a person
#: must look at it (a pushing device whose run ended was interrupted mid-change)
NEEDS_PERSON = (ChangeDeviceState.ROLLBACK_FAILED.value,)


def _rollout(change: Change) -> dict[str, Any]:
    """What the rollout section shows: the change's status, its latest apply run's
    devices by wave, the count of each state and the devices that need a person."""
    status = rollouts.status_of(change)
    ended = status != "applying"
    rows = rollouts.device_states(change.run_id) if change.run_id else []
    devices = [rollouts.state_view(row, run_ended=ended) for row in rows]
    for device in devices:
        device["needs_person"] = device["state"] in NEEDS_PERSON or (
            ended and device["state"] == ChangeDeviceState.PUSHING.value
        )
    waves: dict[int, list[dict[str, Any]]] = {}
    for device in devices:
        waves.setdefault(device["wave"], []).append(device)
    counts = Counter(device["state"] for device in devices)
    return {
        "change_id": change.id,
        "status": status,
        "run_id": change.run_id,
        "ended": ended,
        "poll": None if ended else ROLLOUT_POLL,
        "waves": [(_wave_label(number), waves[number]) for number in sorted(waves)],
        "counts": sorted(counts.items(), key=lambda item: _STATE_ORDER.get(item[0], 99)),
        "total": len(devices),
        "needs_person": [d for d in devices if d["needs_person"]],
    }


def _names(devices: list[Any], shown: int = 5) -> str:
    """Some devices' names for a sentence: the first few, then how many more."""
    names = ", ".join(d.name for d in devices[:shown])
    return names + (f" and {len(devices) - shown} more" if len(devices) > shown else "")


def _wave_label(number: int) -> str:
    return "Canary" if number == 0 else f"Wave {number}"


_STATE_ORDER = {state.value: index for index, state in enumerate(ChangeDeviceState)}
