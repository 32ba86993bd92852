"""The health of one Rookery installation: database, schema, workers, queue."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app import config_store, database
from app.extensions import db
from app.services import stats

logger = logging.getLogger(__name__)

#: kept for callers of the old name; the figure lives with the other statistics
WORKER_ALIVE_SECONDS = stats.WORKER_ALIVE_SECONDS


def health() -> dict[str, Any]:
    """Report: status ok|error, database, migrations, workers alive, queue depth and lag,
    and how pushes to the config store's remote go.

    A long queue or a large lag is reported, not judged: status stays "ok" as long
    as the database answers and the schema is current.
    """
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
            queue=None,
        )
        return report
    try:
        report["migrations"] = database.migration_state(db.engine)
        if not report["migrations"]["up_to_date"]:
            report["status"] = "error"
        report["workers"] = workers_alive()
        queue = stats.queue_summary()
        report["queue"] = {"depth": queue["depth"], "lag_seconds": queue["lag_seconds"]}
        # A failing push is a warning (the commits are kept locally and pushed again):
        # reported here, status stays "ok".
        report["config_store"] = config_store.push_state(db.session, current_app)
    except SQLAlchemyError as exc:
        db.session.rollback()
        report["status"] = "error"
        report["error"] = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    return report


def workers_alive() -> dict[str, Any]:
    """Workers whose procrastinate heartbeat is recent."""
    return stats.workers_alive()
