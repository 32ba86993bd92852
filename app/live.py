"""Live announcements: pg_notify in the writer's transaction, ids only.

Channels: ``rookery_run`` (a run's status or progress changed), ``rookery_event``
(an event row), ``rookery_log`` (a log row). Payloads carry ids, never content:
NOTIFY payloads are capped at 8000 bytes and listeners read the rows themselves.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

RUN_CHANNEL = "rookery_run"
EVENT_CHANNEL = "rookery_event"
LOG_CHANNEL = "rookery_log"


def notify(session: Session, channel: str, **ids: Any) -> None:
    """Queue a notification; PostgreSQL delivers it when ``session`` commits."""
    session.execute(select(func.pg_notify(channel, json.dumps(ids, separators=(",", ":")))))
