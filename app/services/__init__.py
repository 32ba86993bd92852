"""Services: the operations views, the API and the CLI call. They own ``commit()``."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from app.errors import MAX_ID, Conflict, NotFound
from app.extensions import db

Row = TypeVar("Row")


def actor_name(actor: Any) -> str:
    """Who acts, as the records name them: a user's name, the given name, else "system"."""
    from app.models import User

    return actor.username if isinstance(actor, User) else actor or "system"


def find_row(model: type[Row], row_id: int, **options: Any) -> Row | None:
    """The row of ``model`` with this id, or None; an id no PostgreSQL integer can hold
    is not asked for (it would be a database error)."""
    return db.session.get(model, row_id, **options) if 1 <= row_id <= MAX_ID else None


def get_row(model: type[Row], row_id: int, what: str, **options: Any) -> Row:
    """The row of ``model`` with this id, else NotFound("No <what> #<id>.")."""
    row = find_row(model, row_id, **options)
    if row is None:
        raise NotFound(f"No {what} #{row_id}.")
    return row


def flush_unique(message: str) -> None:
    """Write the pending rows; when one takes a name (or key) another row has, roll the
    session back and raise Conflict(``message``)."""
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(message) from None
