"""Login and logout pages, and changing your own password."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from app.auth import log_in, remembered
from app.errors import ValidationError
from app.services import users

bp = Blueprint("auth", __name__)


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=users.MAX_PASSWORD_LENGTH)]
    )
    remember = BooleanField("Keep me logged in")


def _safe_next(target: str | None) -> str:
    """Only redirect to a path on this site, never to another host."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/"):
            return target
    return url_for("main.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int] | tuple[str, int, dict[str, str]]:
    """Show the login form; log the user in on a valid POST."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = users.authenticate(
                form.username.data or "", form.password.data or "", request.remote_addr or ""
            )
        except users.LoginThrottled as exc:
            form.form_errors.append(exc.message)
            page = render_template("auth/login.html", form=form)
            return page, 429, {"Retry-After": str(exc.retry_after)}
        except users.LoginFailed as exc:
            form.form_errors.append(exc.message)
            return render_template("auth/login.html", form=form), 401
        log_in(user, remember=bool(form.remember.data))
        return redirect(_safe_next(request.args.get("next")))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """Log out (POST with CSRF token, so a link elsewhere cannot log you out).

    Every session and remember-me cookie of the person ends, in every browser: a
    copy of the cookies taken before no longer logs anyone in.
    """
    if current_user.is_authenticated:
        users.end_sessions(current_user._get_current_object())
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


def _password_page(errors: dict[str, str] | None = None, message: str | None = None) -> str:
    return render_template(
        "auth/password.html",
        errors=errors or {},
        message=message,
        min_length=users.MIN_PASSWORD_LENGTH,
    )


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password() -> str | Response | tuple[str, int] | tuple[str, int, dict[str, str]]:
    """Change your own password (the current one is needed); your other sessions end."""
    if request.method == "GET":
        return _password_page()
    user = current_user._get_current_object()
    new = request.form.get("new_password") or ""
    if new != (request.form.get("confirm_password") or ""):
        errors = {"confirm_password": "Not the same as the new password."}
        message = "The new password and its confirmation differ."
        return _password_page(errors, message), 422
    keep = remembered()
    try:
        users.change_password(
            user, request.form.get("current_password") or "", new, request.remote_addr or ""
        )
    except users.LoginThrottled as exc:
        page = _password_page(message=exc.message)
        return page, 429, {"Retry-After": str(exc.retry_after)}
    except users.WrongPassword as exc:
        return _password_page(exc.fields, exc.message), 403
    except ValidationError as exc:
        return _password_page(exc.fields, exc.message), 422
    # The change ended every session, this one too: log this browser in again.
    log_in(user, remember=keep)
    flash("Your password is changed; your other sessions are logged out.", "success")
    return redirect(url_for("main.index"))
