"""Run events: the structured trail of every transition, written with the change.

An event row is added to the same session (and so the same transaction) as the
state change it describes; a trigger announces it (app/live.py). ROOKERY_EVENT_LOGGING
=false turns events off, as ``eventlog=False`` does for one ``run_now`` call; the
run's own trigger still announces status changes, so live pages follow.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from app.models import Event, JobRun

logger = logging.getLogger(__name__)

CREATED = "job.created"
QUEUED = "job.queued"
STARTED = "job.started"
PROGRESS = "job.progress"
COMPLETED = "job.completed"
FAILED = "job.failed"
CANCELLED = "job.cancelled"
RETRIED = "job.retried"
TIMEOUT = "job.timeout"
#: a change set's device whose rollback failed: its config differs from its snapshot
ROLLBACK_FAILED = "change.rollback_failed"

TYPES = (
    CREATED,
    QUEUED,
    STARTED,
    PROGRESS,
    COMPLETED,
    FAILED,
    CANCELLED,
    RETRIED,
    TIMEOUT,
    ROLLBACK_FAILED,
)


def enabled(eventlog: bool = True) -> bool:
    return eventlog and bool(current_app.config.get("ROOKERY_EVENT_LOGGING", True))


def record(
    session: Session,
    run: JobRun,
    type_: str,
    message: str = "",
    *,
    eventlog: bool = True,
    actor: str | None = None,
    result: dict[str, Any] | None = None,
    exception: str | None = None,
    data: dict[str, Any] | None = None,
    pre_data: dict[str, Any] | None = None,
    post_data: dict[str, Any] | None = None,
    status: str | None = None,
) -> Event | None:
    """Add the event for ``run``'s current status (or ``status``) to ``session`` (no commit)."""
    if type_ not in TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    if not enabled(eventlog):
        return None
    event = Event(
        type=type_,
        status=status or run.status,
        message=message,
        run_id=run.id,
        job_id=run.job_id,
        actor=actor,
        result=result,
        exception=exception,
        data=data,
        pre_data=pre_data,
        post_data=post_data,
        signal_id=run.signal_id,
    )
    session.add(event)
    return event
