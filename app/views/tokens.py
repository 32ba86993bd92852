"""API tokens on the person's own page: create (shown once), list, revoke.

Everyone may hold tokens (a viewer's token reads the API); an admin also sees and
revokes everyone's. Tokens are stored hashed (app/services/tokens.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from app.errors import NotFound, ValidationError
from app.models import Role, utcnow
from app.services import tokens
from app.views import common

logger = logging.getLogger(__name__)

bp = Blueprint("tokens", __name__, url_prefix="/tokens")


def _listing() -> list[object]:
    everyone = current_user.has_role(Role.ADMIN)
    return tokens.list_tokens(None if everyone else current_user)


@bp.route("")
@login_required
def index() -> str:
    """Your API tokens (an admin sees everyone's)."""
    return render_template("tokens/index.html", tokens=_listing(), errors={}, values={})


@bp.route("", methods=["POST"])
@login_required
def create() -> str | tuple[str, int]:
    """Make a token for yourself; its text is shown on this answer only."""
    name = common.form_text("name")
    days = common.form_text("expires_days")
    values = {"name": name, "expires_days": days}
    expires_at = None
    try:
        if days:
            if not days.isdigit() or not 1 <= int(days) <= 3650:
                raise ValidationError(
                    "Expiry is a number of days from 1 to 3650.",
                    fields={"expires_days": "1 to 3650 days, or empty for never."},
                )
            expires_at = utcnow() + timedelta(days=int(days))
        _, plaintext = tokens.create_token(
            current_user, name, expires_at=expires_at, actor=current_user
        )
    except ValidationError as exc:
        return render_template(
            "tokens/index.html",
            tokens=_listing(),
            errors=exc.fields,
            values=values,
            message=exc.message,
        ), 422
    return render_template(
        "tokens/index.html", tokens=_listing(), errors={}, values={}, new_token=plaintext
    )


@bp.route("/<int:token_id>/revoke", methods=["POST"])
@login_required
def revoke(token_id: int) -> Response:
    """Revoke one of your tokens (an admin: anyone's); it stops working at once."""
    try:
        token = tokens.find_token(token_id)
    except NotFound:
        abort(404)
    if token.user_id != current_user.id and not current_user.has_role(Role.ADMIN):
        abort(403)
    tokens.revoke_token(token.id, actor=current_user)
    flash(f"Token {token.name!r} (rk_{token.prefix}_…) revoked.", "success")
    return redirect(url_for("tokens.index"))
