"""/metrics: Prometheus text, every figure read from PostgreSQL at scrape time.

Open by default, like most exporters (it shows counts, never names or secrets). With
ROOKERY_METRICS_TOKEN set, a scrape must send ``Authorization: Bearer <token>``
(Prometheus: ``authorization: {credentials: ...}`` in the scrape config).
"""

from __future__ import annotations

import hmac
import logging

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.extensions import db

logger = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)


def _authorized() -> bool:
    token = current_app.config.get("ROOKERY_METRICS_TOKEN")
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), str(token).encode()
    )


@bp.route("/metrics")
def scrape() -> Response:
    """Prometheus text exposition; 401 without the bearer token when one is set."""
    if not _authorized():
        return Response(
            "A bearer token is required (ROOKERY_METRICS_TOKEN).\n",
            status=401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="rookery-metrics"'},
        )
    try:
        body = metrics.render()
    except SQLAlchemyError as exc:
        db.session.rollback()
        logger.warning("Metrics scrape failed: the database did not answer: %s", exc)
        return Response("The database did not answer.\n", status=503, mimetype="text/plain")
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST})
