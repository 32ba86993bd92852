"""Reading log lines: filtered, keyset-paginated queries for pages, the API and the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app import logs
from app.errors import ValidationError
from app.extensions import db
from app.models import JobLog

logger = logging.getLogger(__name__)

MAX_PAGE = 1000


@dataclass(frozen=True, kw_only=True)
class LogFilter:
    """Which lines: every field optional; ``level`` means that level and above."""

    run_id: int | None = None
    job_id: int | None = None
    device_id: int | None = None
    log_type: str | None = None
    source: str | None = None
    level: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def levels_from(level: str | None) -> list[str] | None:
    """The levels at or above ``level`` (None: all); a clear error for an unknown one."""
    if not level:
        return None
    try:
        wanted = logs.normalize_level(level)
    except ValueError:
        raise ValidationError(
            f"Unknown log level {level!r}.",
            fields={"level": f"One of {', '.join(logs.LEVELS)}."},
        ) from None
    return list(logs.LEVELS[logs.LEVELS.index(wanted) :])


def query_logs(
    where: LogFilter,
    *,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int = 100,
    oldest_first: bool = False,
) -> tuple[list[JobLog], int | None]:
    """Log lines matching ``where``, keyset-paginated on the id.

    Newest first by default (``before_id`` pages back); ``oldest_first`` with
    ``after_id`` reads forward, as a follower does. Returns the page and the next cursor
    (None when there is no more).
    """
    limit = max(1, min(int(limit), MAX_PAGE))
    query = select(JobLog)
    for column, value in (
        (JobLog.run_id, where.run_id),
        (JobLog.job_id, where.job_id),
        (JobLog.device_id, where.device_id),
        (JobLog.log_type, where.log_type),
        (JobLog.source, where.source),
    ):
        if value is not None and value != "":
            query = query.where(column == value)
    levels = levels_from(where.level)
    if levels is not None and len(levels) < len(logs.LEVELS):
        query = query.where(JobLog.level.in_(levels))
    if where.since is not None:
        query = query.where(JobLog.at >= where.since)
    if where.until is not None:
        query = query.where(JobLog.at < where.until)
    if before_id is not None:
        query = query.where(JobLog.id < before_id)
    if after_id is not None:
        query = query.where(JobLog.id > after_id)
    order = JobLog.id.asc() if oldest_first else JobLog.id.desc()
    rows = list(db.session.scalars(query.order_by(order).limit(limit + 1)))
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor


def as_dict(row: JobLog, *, admin: bool) -> dict[str, Any]:
    """A log line as the API and the CLI's --json show it; its admin-only meta only to
    ``admin`` readers."""
    return {
        "id": row.id,
        "at": row.at.isoformat(),
        "log_type": row.log_type,
        "source": row.source,
        "level": row.level,
        "message": row.message,
        "job_id": row.job_id,
        "job_type": row.job_type,
        "run_id": row.run_id,
        "device_id": row.device_id,
        "meta": logs.visible_meta(row.meta, admin=admin),
    }
