"""Services: the operations views, the API and the CLI call. They own ``commit()``."""

from __future__ import annotations

from typing import Any, TypeVar

from app.errors import MAX_ID, NotFound
from app.extensions import db

Row = TypeVar("Row")


def get_row(model: type[Row], row_id: int, what: str, **options: Any) -> Row:
    """The row of ``model`` with this id, else NotFound("No <what> #<id>."); an id no
    PostgreSQL integer can hold is not asked for (it would be a database error)."""
    row = db.session.get(model, row_id, **options) if 1 <= row_id <= MAX_ID else None
    if row is None:
        raise NotFound(f"No {what} #{row_id}.")
    return row
