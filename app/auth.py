"""Who is asking: Flask-Login wiring and the role checks every mutating route uses."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, abort
from flask_login import current_user

from app.extensions import db, login_manager
from app.models import Role, User

F = TypeVar("F", bound=Callable[..., Any])


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    try:
        return db.session.get(User, int(user_id))
    except ValueError:
        return None


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
    app.register_blueprint(auth_views.bp)

    @app.context_processor
    def inject_roles() -> dict[str, Any]:
        return {"Role": Role}
