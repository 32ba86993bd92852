"""The command policy page: what operators may send with run_commands; admins edit it."""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.auth import require_role
from app.errors import Conflict, ValidationError
from app.models import Role
from app.services import command_rules
from app.views.common import form_text, refuse_nul

bp = Blueprint("policy", __name__, url_prefix="/command-policy")

FIELDS = ("kind", "words", "platform", "note")


def _page(**context: object) -> str:
    return render_template(
        "policy/index.html",
        builtin=command_rules.builtin(),
        rules=command_rules.list_rules(),
        **context,
    )


@bp.route("")
@login_required
def index() -> str:
    """The built-in read-only list by platform and the admins' rules."""
    return _page(values={"kind": "allow"})


@bp.route("/rules", methods=["POST"])
@require_role(Role.ADMIN)
def create_rule() -> str | Response | tuple[str, int]:
    """Add an allow or deny rule."""
    values = {k: form_text(k) for k in FIELDS}
    try:
        refuse_nul(values)
        row = command_rules.create_rule(
            kind=values["kind"],
            words=request.form.get("words", ""),
            platform=values["platform"],
            note=values["note"],
            actor=current_user,
        )
    except ValidationError as exc:
        return _page(values=values, errors=exc.fields, message=exc.message), 422
    except Conflict as exc:
        return _page(values=values, errors={"words": exc.message}, message=exc.message), 409
    flash(f"Rule added: {row.kind} {row.words!r} on {row.platform or 'every platform'}.", "success")
    return redirect(url_for(".index"))


@bp.route("/rules/<int:rule_id>/delete", methods=["POST"])
@require_role(Role.ADMIN)
def delete_rule(rule_id: int) -> Response:
    """Remove a rule."""
    command_rules.delete_rule(rule_id, actor=current_user)
    flash("Rule removed.", "success")
    return redirect(url_for(".index"))
