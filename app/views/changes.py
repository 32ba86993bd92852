"""Change set pages: the list, and a change's page with its per-device preview and its
review (submit, approve, reject). Changes are drafted through the API for now."""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.auth import require_role
from app.errors import Conflict, Forbidden, ValidationError
from app.models import Role
from app.services import changes

bp = Blueprint("changes", __name__, url_prefix="/changes")


@bp.route("")
@login_required
def index() -> str:
    """Every change set, newest first."""
    return render_template("changes/index.html", changes=changes.list_changes())


@bp.route("/<int:change_id>")
@login_required
def show(change_id: int) -> str:
    """A change: what it pushes where, its review, and the per-device preview."""
    change = changes.get_change(change_id)
    return render_template(
        "changes/show.html",
        change=change,
        devices=changes.target_devices(change.target_tags, change.target_device_ids),
    )


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
