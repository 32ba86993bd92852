"""People: create, authenticate (with shared login throttling), change role, disable,
change and reset passwords, end sessions."""

from __future__ import annotations

import logging
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import Select, delete, func, select

from app import audit
from app.errors import Conflict, NotFound, ValidationError
from app.extensions import db
from app.models import (
    LoginFailure,
    Role,
    User,
    check_no_user_password,
    count_users,
    user_by_name,
    utcnow,
)
from app.services import find_row, get_row

logger = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
#: what the login form accepts (app/views/auth.py)
MAX_PASSWORD_LENGTH = 1024


def validate_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME_RE.match(name):
        raise ValidationError(
            "A user name is 1-64 characters: letters, digits, '.', '_', '@' or '-'.",
            fields={"username": "Use letters, digits, '.', '_', '@' or '-' (at most 64)."},
        )
    return name


def validate_password(password: str, *, field: str = "password") -> str:
    """The one password rule (creation, change, reset): 8 to 1024 characters (the
    login form takes no longer one)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"A password needs at least {MIN_PASSWORD_LENGTH} characters.",
            fields={field: f"At least {MIN_PASSWORD_LENGTH} characters."},
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(
            f"A password has at most {MAX_PASSWORD_LENGTH} characters.",
            fields={field: f"At most {MAX_PASSWORD_LENGTH} characters."},
        )
    return password


def parse_role(role: str) -> Role:
    try:
        return Role(role.strip().lower())
    except ValueError:
        raise ValidationError(
            f"Unknown role {role!r}: choose admin, operator or viewer.",
            fields={"role": "Choose admin, operator or viewer."},
        ) from None


def create_user(
    username: str, password: str, role: str | Role, *, actor: User | str | None = None
) -> User:
    """Create a user and commit, with an audit entry; refuses a taken name."""
    name = validate_username(username)
    validate_password(password)
    role = parse_role(role) if isinstance(role, str) else role
    if db.session.scalar(user_by_name(name)) is not None:
        raise Conflict(f"A user named {name!r} already exists.")
    user = User(username=name, role=role.value, active=True)
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    audit.record(
        actor=actor,
        action="create",
        object_type="user",
        object_id=user.id,
        summary=f"created user {name} ({role.value})",
        after={"username": name, "role": role.value, "active": True},
    )
    db.session.commit()
    logger.info("Created user %s with role %s", name, role.value)
    return user


def get_user(username: str) -> User:
    user = db.session.scalar(user_by_name(username))
    if user is None:
        raise NotFound(f"No user named {username.strip().lower()!r}.")
    return user


def find_user(ref: str | int) -> User:
    """A user by id when ``ref`` is all digits (as tokens are found), else by name.

    A name of digits only is found by name when no user has that id."""
    text = str(ref).strip()
    user = None
    if text.isdigit() and len(text) <= 18:
        user = find_row(User, int(text))
    if user is None:
        user = db.session.scalar(user_by_name(text[:200]))
    if user is None:
        raise NotFound(f"No user with the name or id {text[:64]!r}.")
    return user


def _end_sessions(user: User) -> None:
    """Raise the user's session version (in the caller's transaction): every session
    and remember-me cookie made before no longer logs anyone in (app/auth.py)."""
    user.session_version = User.session_version + 1


def end_sessions(user: User) -> None:
    """End every session and remember-me cookie of ``user`` (logout does). Commits."""
    _end_sessions(user)
    db.session.commit()
    logger.info("Ended every session of %s", user.username)


def set_role(username: str, role: str, *, actor: User | str | None = None) -> User:
    """Change a user's role; their sessions end (a new login shows the new role)."""
    user = get_user(username)
    new_role = parse_role(role)
    before = {"role": user.role}
    if user.role != new_role.value:
        _end_sessions(user)
    user.role = new_role.value
    audit.record(
        actor=actor,
        action="update",
        object_type="user",
        object_id=user.id,
        summary=f"role of {user.username}: {before['role']} -> {new_role.value}",
        before=before,
        after={"role": new_role.value},
    )
    db.session.commit()
    return user


def set_active(username: str, active: bool, *, actor: User | str | None = None) -> User:
    """Disable (every session ends) or enable a user; enabling brings no old login back."""
    user = get_user(username)
    before = {"active": user.active}
    if not active or not user.active:
        _end_sessions(user)
    user.active = active
    audit.record(
        actor=actor,
        action="enable" if active else "disable",
        object_type="user",
        object_id=user.id,
        summary=f"{'enabled' if active else 'disabled'} user {user.username}",
        before=before,
        after={"active": active},
    )
    db.session.commit()
    return user


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str
    generated: bool


def ensure_first_admin(password: str | None) -> FirstAdmin | None:
    """With no user at all, create ``admin`` (password given, or generated)."""
    # An advisory lock keeps two processes starting at once from both creating it.
    db.session.execute(select(func.pg_advisory_xact_lock(0x524F4F4B)))
    if db.session.scalar(count_users()):
        db.session.rollback()
        return None
    generated = not password
    password = password or secrets.token_urlsafe(12)
    create_user("admin", password, Role.ADMIN, actor="system")
    return FirstAdmin("admin", password, generated)


# ------------------------------------------------------------------------ login


class LoginThrottled(ValidationError):
    """Too many failed logins: try again later."""

    def __init__(self, message: str | None = None, *, retry_after: int = 0) -> None:
        super().__init__(message)
        #: Whole seconds until a login may be tried again (the Retry-After header).
        self.retry_after = retry_after


class LoginFailed(ValidationError):
    """Invalid user name or password."""


class WrongPassword(LoginFailed):
    """The current password is wrong."""


#: Key space of the per-address advisory lock (two int4 keys: apart from other locks).
_LOGIN_LOCK_SPACE = 0x524F4F4C


def _lock_address(address: str) -> None:
    """One password check at a time per address, so parallel tries cannot all pass the
    count before any failure is written. Released by the next commit or rollback."""
    db.session.execute(
        select(func.pg_advisory_xact_lock(_LOGIN_LOCK_SPACE, func.hashtext(address)))
    )


def _wait(failures: int, last: datetime | None, limit: int, now: datetime) -> float:
    """Seconds still to wait after ``failures`` failed logins, the last at ``last``.

    Up to ``limit`` failures cost nothing; from then on each try waits a delay that
    doubles with every further failure, never longer than the window.
    """
    if failures < limit or last is None:
        return 0.0
    first = current_app.config["ROOKERY_LOGIN_DELAY_SECONDS"]
    window = current_app.config["ROOKERY_LOGIN_WINDOW_SECONDS"]
    delay = min(window, first * 2 ** min(failures - limit, 20))
    return (last + timedelta(seconds=delay) - now).total_seconds()


def _retry_in(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


def _check_throttle(name: str, address: str) -> None:
    """Raise LoginThrottled while this name from this address, or this address, must wait.

    Only failures from this address count: a name that failed elsewhere (someone
    guessing ``admin``'s password) does not slow its owner down here.
    """
    now = utcnow()
    since = now - timedelta(seconds=current_app.config["ROOKERY_LOGIN_WINDOW_SECONDS"])
    from_address = (LoginFailure.address == address) & (LoginFailure.at > since)
    same_name = LoginFailure.username == name
    by_pair, last_pair, by_address, last_address = db.session.execute(
        select(
            func.count().filter(same_name),
            func.max(LoginFailure.at).filter(same_name),
            func.count(),
            func.max(LoginFailure.at),
        ).where(from_address)
    ).one()
    pair_wait = _wait(by_pair, last_pair, current_app.config["ROOKERY_LOGIN_MAX_FAILURES"], now)
    address_wait = _wait(
        by_address,
        last_address,
        current_app.config["ROOKERY_LOGIN_MAX_FAILURES_PER_ADDRESS"],
        now,
    )
    wait = max(pair_wait, address_wait)
    if wait <= 0:
        return
    seconds = max(1, math.ceil(wait))
    who = "this user name from your address" if pair_wait >= address_wait else "your address"
    raise LoginThrottled(
        f"Too many failed logins for {who}. Try again in {_retry_in(seconds)}.",
        retry_after=seconds,
    )


def authenticate(username: str, password: str, address: str) -> User:
    """Return the user, or raise LoginFailed / LoginThrottled.

    Failures are counted in PostgreSQL per user name and address together, and per
    address, so every web process enforces the same delays; a throttled attempt is
    refused before the password is even checked. Every other attempt checks exactly
    one password hash, a dummy one for an unknown name, so the time of the answer
    does not tell which names exist.
    """
    name = username.strip().lower()[:64]
    address = (address or "unknown")[:64]
    _lock_address(address)
    try:
        _check_throttle(name, address)
    except LoginThrottled:
        db.session.rollback()
        raise
    user = db.session.scalar(user_by_name(name)) if name else None
    if user is None:
        password_ok = check_no_user_password(password)
    else:
        password_ok = user.check_password(password)
    if user is None or not password_ok or not user.active:
        db.session.add(LoginFailure(username=name, address=address))
        audit.record(
            actor=name or "anonymous",
            action="login_failed",
            object_type="user",
            object_id=user.id if user else None,
            address=address,
            summary=f"failed login for {name!r}",
        )
        db.session.commit()
        if user is not None and password_ok:
            raise LoginFailed("This account is disabled; ask an administrator.")
        raise LoginFailed()
    db.session.execute(
        delete(LoginFailure).where(LoginFailure.username == name, LoginFailure.address == address)
    )
    user.last_login_at = utcnow()
    audit.record(
        actor=user,
        action="login",
        object_type="user",
        object_id=user.id,
        address=address,
        summary=f"{user.username} logged in",
    )
    db.session.commit()
    return user


# -------------------------------------------------------------------- passwords


def change_password(user: User, current_password: str, new_password: str, address: str) -> User:
    """``user`` changes their own password, proving the current one. Commits.

    A wrong current password counts as a failed login of that name from that address
    (the same throttle, LoginThrottled while it must wait) and raises WrongPassword.
    On success every session and remember-me cookie of the user ends: the caller logs
    its own browser in again (app/views/auth.py). Audited, never with a password.
    """
    validate_password(new_password, field="new_password")
    name = user.username
    address = (address or "unknown")[:64]
    _lock_address(address)
    try:
        _check_throttle(name, address)
    except LoginThrottled:
        db.session.rollback()
        raise
    if not user.check_password(current_password):
        db.session.add(LoginFailure(username=name, address=address))
        audit.record(
            actor=user,
            action="login_failed",
            object_type="user",
            object_id=user.id,
            address=address,
            summary=f"wrong current password in a password change of {name!r}",
        )
        db.session.commit()
        raise WrongPassword(
            "The current password is wrong.",
            fields={"current_password": "Not your current password."},
        )
    db.session.execute(
        delete(LoginFailure).where(LoginFailure.username == name, LoginFailure.address == address)
    )
    user.set_password(new_password)
    _end_sessions(user)
    audit.record(
        actor=user,
        action="password",
        object_type="user",
        object_id=user.id,
        address=address,
        summary=f"{name} changed their password; their other sessions ended",
    )
    db.session.commit()
    logger.info("%s changed their password", name)
    return user


def reset_password(
    user: User, new_password: str, *, actor: User | str | None = None, address: str | None = None
) -> User:
    """An admin (or the server's ``rookery`` command) sets ``user``'s password.

    Every session and remember-me cookie of the user ends (API tokens stay: revoke
    them apart). Audited, never with the password. Commits.
    """
    validate_password(new_password)
    user.set_password(new_password)
    _end_sessions(user)
    audit.record(
        actor=actor,
        action="password",
        object_type="user",
        object_id=user.id,
        address=address,
        summary=f"reset the password of {user.username}; their sessions ended",
    )
    db.session.commit()
    logger.info("The password of %s was reset", user.username)
    return user


# ------------------------------------------------------------------------ pages


def list_users() -> Select[tuple[User]]:
    """Every user, by name."""
    return select(User).order_by(User.username)


def get_user_by_id(user_id: int) -> User:
    return get_row(User, user_id, "user")
