"""The audit trail: one helper every change people make goes through.

``record`` adds an AuditEntry to the caller's session, so the entry commits (or rolls
back) with the change it describes. Secrets never reach the table: any key that
looks like a secret is replaced by a marker before the row is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select

from app.extensions import db
from app.models import AuditEntry, User

logger = logging.getLogger(__name__)

REDACTED = "***"
SECRET_KEY_PARTS = ("password", "secret", "token", "key", "passphrase")


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-looking key's value replaced by ``***``."""
    if isinstance(value, Mapping):
        return {
            str(k): (REDACTED if _is_secret_key(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def record(
    *,
    actor: User | str | None,
    action: str,
    object_type: str,
    object_id: object = None,
    summary: str = "",
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    address: str | None = None,
) -> AuditEntry:
    """Add an audit entry to the current session; the caller's commit writes it."""
    if isinstance(actor, User):
        actor_id, actor_name = actor.id, actor.username
    else:
        actor_id, actor_name = None, actor or "system"
    entry = AuditEntry(
        actor_id=actor_id,
        actor=actor_name,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        summary=summary,
        before=redact(dict(before)) if before is not None else None,
        after=redact(dict(after)) if after is not None else None,
        address=address,
    )
    db.session.add(entry)
    return entry


def list_entries(
    *,
    actor: str | None = None,
    object_type: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Select[tuple[AuditEntry]]:
    """Audit entries, newest first, filtered by actor name, object type, action and time.

    ``since`` is inclusive and ``until`` exclusive; callers page with ``AuditEntry.id``.
    """
    query = select(AuditEntry).order_by(AuditEntry.id.desc())
    if actor:
        query = query.where(func.lower(AuditEntry.actor) == actor.strip().lower())
    if object_type:
        query = query.where(AuditEntry.object_type == object_type)
    if action:
        query = query.where(AuditEntry.action == action)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    return query
