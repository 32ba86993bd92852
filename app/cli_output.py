"""What the ``rookery`` commands print: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def json_option(f: F) -> F:
    """The ``--json`` flag every list and show command takes."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")(f)


def to_json(data: Any) -> str:
    """``data`` as indented JSON; datetimes in ISO 8601."""
    return json.dumps(data, indent=2, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def emit(data: Any, as_json: bool, human: str) -> None:
    """Print ``data`` as JSON, or the ``human`` text."""
    click.echo(to_json(data) if as_json else human)


def when(value: datetime | None) -> str:
    """A time for a table cell: UTC, to the second; "-" for none."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | None) -> str:
    """12ms, 3.4s, 2m05s, 1h02m."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str) -> str:
    """Rows under their headers in aligned columns (the last one unpadded)."""
    if not rows:
        return empty
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [value.ljust(widths[i]) for i, value in enumerate(row[:-1])]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """ "Label:  value" lines, labels aligned (for show commands)."""
    width = max(len(label) for label, _ in pairs) + 1
    return "\n".join(
        f"{(label + ':').ljust(width)}  {'-' if value in (None, '') else value}"
        for label, value in pairs
    )
