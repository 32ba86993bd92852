"""API tokens: created for a user, shown once, stored as a SHA-256 hash, revocable.

A token reads ``rk_<prefix>_<secret>``; the prefix (stored in clear) names it in lists
and audit entries without revealing it. Lookup hashes the presented token and finds
the row by that unique hash, so a database dump holds nothing a client could present.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select

from app import audit
from app.errors import NotFound, ValidationError
from app.extensions import db
from app.models import ApiToken, User, utcnow
from app.services import find_row

logger = logging.getLogger(__name__)

#: last_used_at is refreshed at most this often, so each API call does not write a row
TOUCH_INTERVAL = timedelta(minutes=1)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    user: User,
    name: str = "",
    *,
    expires_at: datetime | None = None,
    actor: User | str | None = None,
) -> tuple[ApiToken, str]:
    """Make a token for ``user``; returns the row and the token text (shown once). Commits."""
    name = (name or "").strip() or "api"
    if len(name) > 100:
        raise ValidationError(
            "A token name has at most 100 characters.", fields={"name": "At most 100 characters."}
        )
    if not user.active:
        raise ValidationError(f"User {user.username!r} is disabled.", fields={"user": "Disabled."})
    prefix = secrets.token_hex(4)
    plaintext = f"rk_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(
        user_id=user.id,
        name=name,
        prefix=prefix,
        token_hash=_hash(plaintext),
        expires_at=expires_at,
    )
    db.session.add(token)
    db.session.flush()
    audit.record(
        actor=actor,
        action="create",
        object_type="api_token",
        object_id=token.id,
        summary=f"created API token {name!r} (rk_{prefix}_…) for {user.username}",
    )
    db.session.commit()
    return token, plaintext


def list_tokens(user: User | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if user is not None:
        query = query.where(ApiToken.user_id == user.id)
    return list(db.session.scalars(query))


def find_token(ref: str | int) -> ApiToken:
    """A token by id or by its prefix (``rk_<prefix>`` or the bare prefix)."""
    text = str(ref).strip()
    token = None
    if text.isdigit():
        token = find_row(ApiToken, int(text))
    if token is None:
        prefix = text.removeprefix("rk_").split("_", 1)[0]
        token = db.session.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
    if token is None:
        raise NotFound(f"No API token {text!r}.")
    return token


def revoke_token(ref: str | int, *, actor: User | str | None = None) -> ApiToken:
    """Revoke a token (by id or prefix); using it afterwards gets 401. Commits."""
    token = find_token(ref)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(
            actor=actor,
            action="revoke",
            object_type="api_token",
            object_id=token.id,
            summary=f"revoked API token {token.name!r} (rk_{token.prefix}_…) "
            f"of {token.user.username}",
        )
        db.session.commit()
    return token


def authenticate(presented: str) -> User | None:
    """The active user a presented token belongs to, or None (unknown, revoked, expired)."""
    if not presented or len(presented) > 200:
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(presented)))
    now = utcnow()
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    user = token.user
    if not user.active:
        return None
    if token.last_used_at is None or now - token.last_used_at > TOUCH_INTERVAL:
        token.last_used_at = now
        db.session.commit()
    return user
