"""Passwords: change your own (the current one is needed), an admin resets another's.

Either ends every browser session and remember-me cookie of that person (the pages'
logins); API tokens are apart and stay valid until revoked (``rookery token revoke``).
"""

from __future__ import annotations

import logging
from typing import Annotated

from flask import jsonify, make_response, request
from pydantic import StringConstraints

from app.api import schemas as s
from app.api.base import actor, bp, requires, responses, spec
from app.errors import Conflict
from app.models import Role
from app.services import users

logger = logging.getLogger(__name__)

#: any text; the length rule is the service's (users.validate_password), one for all
Password = Annotated[str, StringConstraints(max_length=100_000)]


class PasswordChange(s.Request):
    current_password: Password
    new_password: Password


class PasswordReset(s.Request):
    new_password: Password


def _error(status: int, title: str, message: str, fields: dict[str, str] | None = None):
    body = {"error": title, "message": message}
    if fields:
        body["fields"] = fields
    return make_response(jsonify(body), status)


@bp.post("/account/password")
@spec.validate(json=PasswordChange, resp=responses(HTTP_204=None, HTTP_429=s.Error), tags=["auth"])
@requires(Role.VIEWER)
def change_own_password():
    """Change the password of the token's owner; every browser session of theirs ends.

    A wrong ``current_password`` is a 403 and counts as a failed login of that name
    from this address: after too many, 429 with ``Retry-After``.
    """
    body: PasswordChange = request.context.json
    try:
        users.change_password(
            actor(), body.current_password, body.new_password, request.remote_addr or ""
        )
    except users.LoginThrottled as exc:
        response = _error(429, "Too Many Requests", exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except users.WrongPassword as exc:
        return _error(403, "Forbidden", exc.message, exc.fields)
    return "", 204


@bp.post("/users/<ref>/password")
@spec.validate(json=PasswordReset, resp=responses(HTTP_204=None), tags=["users"])
@requires(Role.ADMIN)
def reset_password(ref: str):
    """Set a user's password (``ref``: user name, or id); every session of theirs ends.

    Your own password is changed with ``POST /account/password`` (409 here).
    """
    body: PasswordReset = request.context.json
    user = users.find_user(ref)
    if user.id == actor().id:
        raise Conflict(
            "Change your own password with POST /api/v1/account/password "
            "(it needs the current one)."
        )
    users.reset_password(user, body.new_password, actor=actor(), address=request.remote_addr)
    return "", 204
