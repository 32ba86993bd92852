"""Log lines in the database: the one table job modules and Rookery's parts write to.

Every row is announced by a trigger (ids only, see app/live.py) in the transaction
that writes it, so a listener never hears of a line it cannot read yet.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from app.extensions import db
from app.models import JobLog

logger = logging.getLogger(__name__)

LEVELS = ("debug", "info", "warning", "error", "critical")

#: the key of a line's ``meta`` that only admins read (the API's /logs leaves it out for
#: other roles, live streams for everyone): details such as why a webhook delivery
#: failed, which would tell anyone which internal ports answer
ADMIN_ONLY = "admin_only"


def normalize_level(level: str) -> str:
    value = str(level).strip().lower()
    if value == "warn":
        value = "warning"
    if value not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    return value


def write(
    *,
    level: str,
    log_type: str,
    source: str,
    message: str,
    meta: dict[str, Any] | None = None,
    run_id: int | None = None,
    job_id: int | None = None,
    job_type: str | None = None,
    device_id: int | None = None,
    session: Session | None = None,
) -> JobLog:
    """Add a log row and its notification to ``session`` (default: db.session); no commit."""
    session = session or db.session
    row = JobLog(
        level=normalize_level(level),
        log_type=log_type,
        source=source,
        message=message,
        meta=meta,
        run_id=run_id,
        job_id=job_id,
        job_type=job_type,
        device_id=device_id,
    )
    session.add(row)
    return row


def visible_meta(meta: dict[str, Any] | None, *, admin: bool) -> dict[str, Any] | None:
    """A line's ``meta`` as a reader sees it: without :data:`ADMIN_ONLY` unless ``admin``."""
    if admin or not isinstance(meta, dict) or ADMIN_ONLY not in meta:
        return meta
    return {key: value for key, value in meta.items() if key != ADMIN_ONLY}


def system(level: str, part: str, message: str, meta: dict[str, Any] | None = None) -> JobLog:
    """Log a line from one of Rookery's own parts and commit it."""
    row = write(
        level=level, log_type="system", source=f"rookery.{part}", message=message, meta=meta
    )
    db.session.commit()
    return row
