"""Credential pages: the list for everyone; create, edit and delete for admins.

A stored password or enable secret is never rendered: the edit form has empty
"change" fields (left empty, the stored one stays), and a form that fails is shown
again without what was typed into them.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.auth import require_role
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.models import Credential, Role
from app.services import credentials, inventory
from app.views.common import form_bool, form_text, refuse_nul

logger = logging.getLogger(__name__)

bp = Blueprint("credentials", __name__, url_prefix="/credentials")

#: the fields a failed form shows again (never the secrets)
SHOWN_FIELDS = ("name", "username", "priority", "tags")


def _form_values() -> dict[str, Any]:
    return {k: form_text(k).replace("\x00", "") for k in SHOWN_FIELDS}


def _credential_values(credential: Credential) -> dict[str, Any]:
    return {
        "name": credential.name,
        "username": credential.username,
        "priority": credential.priority,
        "tags": ", ".join(t.name for t in credential.tags),
    }


def _secret(name: str) -> str:
    # Secrets are taken as typed (no strip: a space may be part of a password).
    return request.form.get(name) or ""


def _refuse_nul() -> None:
    """A NUL byte in any field is a form error, never silently dropped (a password
    changed behind the admin's back would simply stop working)."""
    refuse_nul({k: request.form.get(k) or "" for k in (*SHOWN_FIELDS, "password", "enable_secret")})


@bp.route("")
@login_required
def index() -> str:
    """Credentials in the order they are tried, with their use counts."""
    rows = [credentials.public_view(c) for c in db.session.scalars(credentials.list_credentials())]
    return render_template("credentials/index.html", credentials=rows)


@bp.route("/new", methods=["GET", "POST"])
@require_role(Role.ADMIN)
def create() -> str | Response | tuple[str, int]:
    """The new-credential form; saves on POST."""
    if request.method == "GET":
        values = {"priority": credentials.DEFAULT_PRIORITY}
        return render_template("credentials/form.html", credential=None, values=values)
    values = _form_values()
    try:
        _refuse_nul()
        credential = credentials.create_credential(
            values["name"],
            values["username"],
            _secret("password"),
            enable_secret=_secret("enable_secret") or None,
            priority=values["priority"],
            tags=inventory.split_tags(values["tags"]),
            actor=current_user,
        )
    except ValidationError as exc:
        return _form_again(None, values, exc.message, exc.fields, 422)
    except Conflict as exc:
        return _form_again(None, values, exc.message, {"name": exc.message}, 409)
    flash(f"Credential {credential.name} created.", "success")
    return redirect(url_for(".index"))


@bp.route("/<int:credential_id>/edit", methods=["GET", "POST"])
@require_role(Role.ADMIN)
def edit(credential_id: int) -> str | Response | tuple[str, int]:
    """The edit form; empty change fields keep the stored password and secret."""
    credential = credentials.get_credential(credential_id)
    if request.method == "GET":
        return render_template(
            "credentials/form.html",
            credential=credentials.public_view(credential),
            values=_credential_values(credential),
        )
    values = _form_values()
    new_secret = _secret("enable_secret")
    # The service clears the enable secret on "": only the explicit box asks for that.
    enable_secret = "" if form_bool("clear_enable_secret") else (new_secret or None)
    try:
        _refuse_nul()
        credential = credentials.update_credential(
            credential_id,
            actor=current_user,
            name=values["name"],
            username=values["username"],
            password=_secret("password") or None,
            enable_secret=enable_secret,
            priority=values["priority"] or None,
            tags=inventory.split_tags(values["tags"]),
        )
    except ValidationError as exc:
        view = credentials.public_view(credentials.get_credential(credential_id))
        return _form_again(view, values, exc.message, exc.fields, 422)
    except Conflict as exc:
        view = credentials.public_view(credentials.get_credential(credential_id))
        return _form_again(view, values, exc.message, {"name": exc.message}, 409)
    flash(f"Credential {credential.name} saved.", "success")
    return redirect(url_for(".index"))


def _form_again(
    credential: dict[str, Any] | None,
    values: dict[str, Any],
    message: str,
    errors: dict[str, str],
    status: int,
) -> tuple[str, int]:
    return (
        render_template(
            "credentials/form.html",
            credential=credential,
            values=values,
            errors=errors,
            message=message,
        ),
        status,
    )


@bp.route("/<int:credential_id>/delete", methods=["POST"])
@require_role(Role.ADMIN)
def delete(credential_id: int) -> Response:
    """Delete a credential (refused while jobs name it)."""
    name = credentials.get_credential(credential_id).name
    try:
        credentials.delete_credential(credential_id, actor=current_user)
    except Conflict as exc:
        flash(exc.message, "error")
    else:
        flash(f"Credential {name} deleted.", "success")
    return redirect(url_for(".index"))
