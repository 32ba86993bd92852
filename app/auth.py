"""Who is asking: Flask-Login wiring and the role checks every mutating route uses."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from flask import Flask, abort, current_app, request, session
from flask_login import COOKIE_NAME, current_user, login_user
from flask_login.utils import decode_cookie

from app.extensions import login_manager
from app.models import Role, User
from app.services import find_row

F = TypeVar("F", bound=Callable[..., Any])


#: How long "Keep me logged in" lasts, and the longest any login lasts: Flask-Login's
#: own default is 365 days.
REMEMBER_DURATION = timedelta(days=30)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The user a session or remember-me cookie names, while that login still counts.

    The cookie holds ``id:session_version:stamp`` (``User.get_id``). It counts only
    while the user is active, the version is the user's current one (logout, disable,
    a password or role change raise it) and the login is younger than the remember-me
    duration. Anything else, a bare id of an older cookie included, is nobody.
    """
    parts = user_id.split(":")
    if len(parts) != 3 or not all(part.isdigit() and len(part) <= 18 for part in parts):
        return None
    row_id, version, stamp = (int(part) for part in parts)
    user = find_row(User, row_id)
    if user is None or not user.active or user.session_version != version:
        return None
    duration = current_app.config.get("REMEMBER_COOKIE_DURATION", REMEMBER_DURATION)
    seconds = duration if isinstance(duration, int) else duration.total_seconds()
    if time.time() - stamp > seconds:
        return None
    user.login_stamp = stamp
    return user


def log_in(user: User, *, remember: bool = False) -> None:
    """Start a login of ``user`` in this browser (a new stamp, the current version)."""
    user.login_stamp = int(time.time())
    login_user(user, remember=remember)


def remembered() -> bool:
    """Whether this browser's login is a kept one ("Keep me logged in"): its remember-me
    cookie names the same login as its session."""
    cookie = request.cookies.get(current_app.config.get("REMEMBER_COOKIE_NAME", COOKIE_NAME))
    return bool(cookie) and decode_cookie(cookie) == session.get("_user_id")


def require_role(role: Role) -> Callable[[F], F]:
    """Refuse (401 → login page, or 403) unless the user holds at least ``role``."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.has_role(role):
                abort(
                    403,
                    f"This page needs the {role.value} role; you are signed in as "
                    f"{current_user.username}, a {current_user.role}. Ask an admin if you "
                    "need it.",
                )
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def init_app(app: Flask) -> None:
    from app.views import auth as auth_views

    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to see this page."
    login_manager.login_message_category = "info"
    app.config.setdefault("REMEMBER_COOKIE_DURATION", REMEMBER_DURATION)
    app.register_blueprint(auth_views.bp)

    @app.context_processor
    def inject_roles() -> dict[str, Any]:
        return {"Role": Role}
