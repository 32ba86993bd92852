"""Live announcements: PostgreSQL triggers NOTIFY in the writer's transaction, ids only.

Channels (see migrations/versions/0005_notify_triggers.py): ``rookery_run`` (a run was
inserted or its status or progress changed: run_id, status, done, total),
``rookery_event`` (id, run_id, type) and ``rookery_log`` (id, run_id, level). Payloads
carry ids, never content: NOTIFY payloads are capped at 8000 bytes and listeners
read the rows themselves. Because triggers send them, every writer announces its
rows — the runner, a job module's own session, a psql session — with no round trip.
"""

from __future__ import annotations

RUN_CHANNEL = "rookery_run"
EVENT_CHANNEL = "rookery_event"
LOG_CHANNEL = "rookery_log"
CHANNELS = (RUN_CHANNEL, EVENT_CHANNEL, LOG_CHANNEL)
