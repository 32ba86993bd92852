"""Keyset pagination, the one way every list of the API pages.

A list answers ``{"items": [...], "next": CURSOR | null}``; the next page is the same
call with ``cursor=CURSOR`` (and the same filters and order). A cursor is the sort key
of the last item shown: the next page starts strictly after it, so a walk shows every
row once even while rows are added or removed, and page 1,000 costs what page 1 costs
(an index seek, never ``OFFSET``). Cursors are opaque to clients; a list ordered by id
alone happens to use the id itself, so the older ``before``/``after`` parameters of
runs, logs and the audit trail take its ``next`` too.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_, tuple_

from app.errors import ValidationError
from app.extensions import db

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: the message of a cursor that is not one this API gave out
BAD_CURSOR = 'Invalid cursor: pass the "next" of the previous page unchanged.'
#: largest id a cursor may name (PostgreSQL bigint)
MAX_BIGINT = 9_223_372_036_854_775_807


@dataclass(frozen=True)
class Key:
    """One column (or SQL expression) of a list's order; the last key must be unique."""

    column: Any
    descending: bool = False

    @property
    def kind(self) -> type:
        """The Python type of the key's values (int, str or datetime)."""
        return self.column.type.python_type


def bad_cursor(field: str = "cursor") -> ValidationError:
    return ValidationError(BAD_CURSOR, fields={field: "Not a cursor of this list."})


def encode(values: Sequence[Any]) -> str:
    """The cursor of a row whose sort key is ``values``."""
    if len(values) == 1 and isinstance(values[0], int):
        return str(values[0])
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    text = json.dumps(plain, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str, kinds: Sequence[type], field: str = "cursor") -> tuple[Any, ...]:
    """The sort key a cursor names; a cursor this list did not give out is a 422."""
    if list(kinds) == [int]:
        return (_id(cursor, field),)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad_cursor(field) from None
    if not isinstance(values, list) or len(values) != len(kinds):
        raise bad_cursor(field)
    return tuple(_value(value, kind, field) for value, kind in zip(values, kinds, strict=True))


def _id(text: str, field: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise bad_cursor(field)
    value = int(text)
    if not 1 <= value <= MAX_BIGINT:
        raise bad_cursor(field)
    return value


def _value(value: Any, kind: type, field: str) -> Any:
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        if abs(value) <= MAX_BIGINT:
            return value
    elif kind is str and isinstance(value, str) and "\x00" not in value:
        return value
    elif kind is datetime and isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise bad_cursor(field) from None
        if when.tzinfo is not None:
            return when
    raise bad_cursor(field)


def after(keys: Sequence[Key], values: Sequence[Any]) -> Any:
    """The condition "comes after ``values``" in the order of ``keys``."""
    if len({k.descending for k in keys}) == 1:
        row = tuple_(*(k.column for k in keys))
        return row < tuple_(*values) if keys[0].descending else row > tuple_(*values)
    clauses = []
    for i, key in enumerate(keys):
        later = key.column < values[i] if key.descending else key.column > values[i]
        same = [keys[j].column == values[j] for j in range(i)]
        clauses.append(and_(*same, later))
    return or_(*clauses)


def order(keys: Sequence[Key]) -> list[Any]:
    return [k.column.desc() if k.descending else k.column.asc() for k in keys]


def page_query(
    query: Select[Any],
    keys: Sequence[Key],
    *,
    cursor: str | None,
    limit: int,
    values: Callable[[Any], Sequence[Any]],
) -> tuple[list[Any], str | None]:
    """One page of ``query`` in the order of ``keys``, after ``cursor``: the rows (ORM
    objects for a one-entity select, rows otherwise) and the next page's cursor.

    ``values(row)`` is the row's sort key, as ``keys`` name it.
    """
    if cursor is not None:
        query = query.where(after(keys, decode(cursor, [k.kind for k in keys])))
    query = query.order_by(None).order_by(*order(keys)).limit(limit + 1)
    if len(query.column_descriptions) == 1:
        rows: list[Any] = list(db.session.scalars(query))
    else:
        rows = list(db.session.execute(query).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode(values(rows[-1])) if more else None


def page_items(
    items: Sequence[T],
    key: Callable[[T], tuple[Any, ...]],
    kinds: Sequence[type],
    *,
    cursor: str | None,
    limit: int,
) -> tuple[list[T], str | None]:
    """One page of a short list a service answers whole (a job's webhooks, the compliance
    rules), sorted ascending by ``key``, with the same cursors as ``page_query``."""
    ordered = sorted(items, key=key)
    if cursor is not None:
        start = decode(cursor, kinds)
        ordered = [item for item in ordered if key(item) > start]
    page = ordered[:limit]
    return page, encode(key(page[-1])) if len(ordered) > limit else None


def older_than(before: int | None, cursor: str | None) -> int | None:
    """Where a newest-first list by id starts: below ``before`` (the older parameter of
    runs, logs and the audit trail) or below the cursor's id, not both."""
    if before is not None and cursor is not None:
        raise ValidationError(
            'Give "cursor" or "before", not both.', fields={"cursor": 'Not with "before".'}
        )
    return decode(cursor, [int])[0] if cursor is not None else before


def envelope(items: list[Any], next_cursor: str | int | None) -> dict[str, Any]:
    """A list answer: the items, and the cursor of the next page (null: the last)."""
    return {"items": items, "next": None if next_cursor is None else str(next_cursor)}
