"""Error pages and JSON errors: a clear message, never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.errors import (
    MAX_ID,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    NotFound,
    RookeryError,
    ValidationError,
)

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: tuple[tuple[type[RookeryError], int], ...] = (
    (ValidationError, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Forbidden, 403),
    (DatabaseUnavailable, 503),
)


def wants_json() -> bool:
    return request.path.startswith("/api/") or (request.accept_mimetypes.best == "application/json")


def _respond(status: int, title: str, message: str, fields: dict[str, str] | None = None):
    if wants_json():
        body: dict[str, object] = {"error": title, "message": message}
        if fields:
            body["fields"] = fields
        return jsonify(body), status
    return render_template("error.html", status=status, title=title, message=message), status


def refuse_odd_urls() -> ResponseReturnValue | None:
    """Before any view: NUL characters (PostgreSQL text cannot hold them) are a 422, and an
    id in the path outside 1..MAX_ID is a 404, instead of an error from the database."""
    if "\x00" in request.path or any("\x00" in value for value in request.args.values()):
        return _respond(422, "ValidationError", "The URL may not contain NUL characters.")
    if any(
        isinstance(value, int) and not 1 <= value <= MAX_ID
        for value in (request.view_args or {}).values()
    ):
        return _respond(404, "Not Found", "No such record.")
    return None


def init_app(app: Flask) -> None:
    app.before_request(refuse_odd_urls)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return _respond(
            400,
            "Security token missing",
            "The form's security token is missing or expired. Reload the page and try again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _respond(exc.code or 500, exc.name, exc.description or exc.name)

    @app.errorhandler(RookeryError)
    def rookery_error(exc: RookeryError):
        status = next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), 400)
        fields = exc.fields if isinstance(exc, ValidationError | Forbidden) else None
        return _respond(status, type(exc).__name__, exc.message, fields)

    @app.errorhandler(OperationalError)
    def database_down(exc: OperationalError):
        logger.warning(
            "Database unavailable during %s %s: %s",
            request.method,
            request.path,
            str(exc.orig).strip().splitlines()[0] if exc.orig else exc,
        )
        return _respond(
            503,
            "Database unavailable",
            "PostgreSQL cannot be reached right now. Try again in a moment.",
        )

    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError):
        logger.error(
            "Unhandled error on %s %s",
            request.method,
            request.path,
            exc_info=exc.original_exception,
        )
        return _respond(
            500, "Internal error", "Something went wrong on the server; it has been logged."
        )
