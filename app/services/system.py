"""The health of one Rookery installation: database, schema, workers."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app import database
from app.extensions import db

logger = logging.getLogger(__name__)

# A worker heartbeats every 10 s (procrastinate's default); 30 s of silence = gone.
WORKER_ALIVE_SECONDS = 30


def health() -> dict[str, Any]:
    """Report: status ok|error, database, migrations, workers alive."""
    report: dict[str, Any] = {"status": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
        report["database"] = {"reachable": True}
    except SQLAlchemyError as exc:
        db.session.rollback()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()
        report.update(
            status="error",
            database={"reachable": False, "error": reason[0] if reason else type(exc).__name__},
            migrations=None,
            workers=None,
        )
        return report
    try:
        report["migrations"] = database.migration_state(db.engine)
        if not report["migrations"]["up_to_date"]:
            report["status"] = "error"
        report["workers"] = workers_alive()
    except SQLAlchemyError as exc:
        db.session.rollback()
        report["status"] = "error"
        report["error"] = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    return report


def workers_alive() -> dict[str, Any]:
    """Workers whose procrastinate heartbeat is recent."""
    rows = db.session.execute(
        text(
            "SELECT id, last_heartbeat FROM procrastinate_workers "
            "WHERE last_heartbeat > now() - make_interval(secs => :secs) ORDER BY id"
        ),
        {"secs": WORKER_ALIVE_SECONDS},
    ).all()
    return {
        "alive": len(rows),
        "workers": [{"id": r.id, "last_heartbeat": r.last_heartbeat.isoformat()} for r in rows],
    }
