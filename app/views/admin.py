"""Admin pages: people (create, change role, disable/enable, reset a password) and the audit
trail."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import audit
from app.auth import require_role
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.models import AuditEntry, Role
from app.services import users
from app.views.common import form_text, is_htmx, query_without

logger = logging.getLogger(__name__)

bp = Blueprint("admin", __name__)

AUDIT_PAGE_SIZE = 50
#: values the audit filters suggest (any other value may be typed)
OBJECT_TYPES = ("credential", "device", "job", "run", "schedule", "setting", "tag", "user")
ACTIONS = (
    "create",
    "update",
    "delete",
    "import",
    "enable",
    "disable",
    "login",
    "login_failed",
    "password",
    "run",
    "cancel",
    "relaunch",
)
ROLES = [(r.value, r.value) for r in Role]


# -------------------------------------------------------------------------- users


def _users_page(
    *,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return (
        render_template(
            "users/index.html",
            users=list(db.session.scalars(users.list_users())),
            roles=ROLES,
            values=values or {"role": Role.VIEWER.value},
            errors=errors or {},
            message=message,
            min_length=users.MIN_PASSWORD_LENGTH,
        ),
        status,
    )


@bp.route("/users")
@require_role(Role.ADMIN)
def user_list() -> tuple[str, int]:
    """Every user with their role and state, and the new-user form."""
    return _users_page()


@bp.route("/users", methods=["POST"])
@require_role(Role.ADMIN)
def user_create() -> Response | tuple[str, int]:
    """Create a user from the form on the users page."""
    values = {"username": form_text("username")[:200], "role": form_text("role")}
    try:
        user = users.create_user(
            values["username"],
            request.form.get("password") or "",
            values["role"],
            actor=current_user,
        )
    except ValidationError as exc:
        return _users_page(values=values, errors=exc.fields, message=exc.message, status=422)
    except Conflict as exc:
        errors = {"username": exc.message}
        return _users_page(values=values, errors=errors, message=exc.message, status=409)
    flash(f"User {user.username} created ({user.role}).", "success")
    return redirect(url_for(".user_list"))


@bp.route("/users/<int:user_id>/role", methods=["POST"])
@require_role(Role.ADMIN)
def user_role(user_id: int) -> Response | tuple[str, int]:
    """Change a user's role (not your own: an admin cannot lock themselves out)."""
    user = users.get_user_by_id(user_id)
    if user.id == current_user.id:
        return _users_page(message="You cannot change your own role.", status=409)
    try:
        users.set_role(user.username, form_text("role"), actor=current_user)
    except ValidationError as exc:
        return _users_page(message=exc.message, status=422)
    flash(f"{user.username} is now {user.role}.", "success")
    return redirect(url_for(".user_list"))


@bp.route("/users/<int:user_id>/active", methods=["POST"])
@require_role(Role.ADMIN)
def user_active(user_id: int) -> Response | tuple[str, int]:
    """Disable or enable a user (not yourself)."""
    user = users.get_user_by_id(user_id)
    if user.id == current_user.id:
        return _users_page(message="You cannot disable your own account.", status=409)
    active = form_text("active") == "1"
    users.set_active(user.username, active, actor=current_user)
    flash(f"User {user.username} {'enabled' if active else 'disabled'}.", "success")
    return redirect(url_for(".user_list"))


@bp.route("/users/<int:user_id>/password", methods=["POST"])
@require_role(Role.ADMIN)
def user_password(user_id: int) -> Response | tuple[str, int]:
    """Set another user's password; every session of theirs ends (yours: Password page)."""
    user = users.get_user_by_id(user_id)
    if user.id == current_user.id:
        return _users_page(
            message="Change your own password on the Password page (it asks for the current one).",
            status=409,
        )
    try:
        users.reset_password(
            user,
            request.form.get("password") or "",
            actor=current_user,
            address=request.remote_addr,
        )
    except ValidationError as exc:
        message = f"Password of {user.username} not changed: {exc.message}"
        return _users_page(message=message, status=422)
    flash(f"Password of {user.username} changed; their sessions are logged out.", "success")
    return redirect(url_for(".user_list"))


# -------------------------------------------------------------------------- audit


def _day(name: str, errors: dict[str, str]) -> datetime | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return datetime.strptime(raw[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        errors[name] = "A date as YYYY-MM-DD."
        return None


@bp.route("/audit")
@require_role(Role.ADMIN)
def audit_list() -> tuple[str, int]:
    """Who changed what and when: filterable by actor, object type, action and day."""
    errors: dict[str, str] = {}
    filters = {
        "actor": (request.args.get("actor") or "").strip()[:100],
        "object_type": (request.args.get("object_type") or "").strip()[:32],
        "action": (request.args.get("action") or "").strip()[:32],
        "since": (request.args.get("since") or "").strip()[:10],
        "until": (request.args.get("until") or "").strip()[:10],
    }
    since = _day("since", errors)
    until = _day("until", errors)
    query = audit.list_entries(
        actor=filters["actor"] or None,
        object_type=filters["object_type"] or None,
        action=filters["action"] or None,
        since=since,
        until=until + timedelta(days=1) if until else None,  # the whole "until" day
    )
    before = _int_arg("before")
    after = _int_arg("after")
    if after is not None:
        rows = list(
            db.session.scalars(
                query.where(AuditEntry.id > after)
                .order_by(None)
                .order_by(AuditEntry.id)
                .limit(AUDIT_PAGE_SIZE + 1)
            )
        )
        has_newer = len(rows) > AUDIT_PAGE_SIZE
        entries = list(reversed(rows[:AUDIT_PAGE_SIZE]))
        has_older = True
    else:
        if before is not None:
            query = query.where(AuditEntry.id < before)
        rows = list(db.session.scalars(query.limit(AUDIT_PAGE_SIZE + 1)))
        entries = rows[:AUDIT_PAGE_SIZE]
        has_older = len(rows) > AUDIT_PAGE_SIZE
        has_newer = before is not None
    older_url = newer_url = None
    if entries and has_older:
        older_url = url_for(".audit_list", **query_without(before=entries[-1].id, after=None))
    if entries and has_newer:
        newer_url = url_for(".audit_list", **query_without(after=entries[0].id, before=None))
    context = {
        "entries": entries,
        "filters": filters,
        "errors": errors,
        "message": "Some filters are not valid." if errors else None,
        "object_types": OBJECT_TYPES,
        "actions": ACTIONS,
        "older_url": older_url,
        "newer_url": newer_url,
    }
    status = 400 if errors else 200
    if _wants_partial():
        return render_template("audit/_entries.html", **context), status
    return render_template("audit/index.html", **context), status


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name) or ""
    if not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


def _wants_partial() -> bool:
    """An HTMX swap of the partial; a history restore (cache miss) wants the whole page."""
    return is_htmx() and not request.headers.get("HX-History-Restore-Request")
