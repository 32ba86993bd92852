"""/health: database reachability, migration state and live workers, as JSON."""

from __future__ import annotations

from flask import Blueprint, jsonify
from werkzeug.wrappers import Response

from app.services import system

bp = Blueprint("health", __name__)


@bp.route("/health")
def health() -> tuple[Response, int]:
    """200 when the database answers and the schema is current, 503 otherwise."""
    report = system.health()
    return jsonify(report), 200 if report["status"] == "ok" else 503
