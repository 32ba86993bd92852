"""The JSON API under ``/api/v1``: token-authenticated, described by ``/api/v1/openapi.json``.

Each module adds its routes to the one blueprint ``bp`` (see ``app.api.base``):
``jobs`` (job types, jobs, starting runs), ``runs`` (runs, events, logs), ``inventory``
(devices, tags, credentials, imports, config history), ``admin`` (schedules,
statistics, audit trail), ``account`` (passwords: your own, an admin's reset),
``policy`` (run_commands' command policy), ``webhooks``, ``stream`` (a run's live events
as SSE).
Views parse (pydantic, via spectree), call one service and serialise
(``app.present``); errors are JSON (``app.errors_web``).
"""

from __future__ import annotations

import copy
from typing import Any

from flask import jsonify

from app.api import (
    account,
    admin,
    changes,
    compliance,
    inventory,
    jobs,
    platforms,
    policy,
    runs,
    schemas,
    stream,
    webhooks,
)
from app.api.base import bp, public, spec

__all__ = ["bp", "openapi_document"]

_MODULES = (
    account,
    admin,
    changes,
    compliance,
    inventory,
    jobs,
    platforms,
    policy,
    runs,
    stream,
    webhooks,
)

#: operations answering text rather than JSON: media type of their 200
_TEXT_ANSWERS = {
    ("/api/v1/devices/{device_id}/configs/{commit}", "get"): "text/plain",
    ("/api/v1/devices/{device_id}/diff", "get"): "text/x-diff",
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API, generated from the routes and their models."""
    document = copy.deepcopy(spec.spec)
    document["paths"].update(copy.deepcopy(stream.OPENAPI))
    for (path, method), media in _TEXT_ANSWERS.items():
        operation = document["paths"].get(path, {}).get(method)
        if operation is not None:
            operation["responses"]["200"]["content"] = {media: {"schema": {"type": "string"}}}
    for path_item in document["paths"].values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["schema"].get("type") == "integer":
                    parameter["schema"].update(minimum=1, maximum=schemas.MAX_INT)
            for status, answer in operation.get("responses", {}).items():
                if status == "204":  # no body
                    answer.pop("content", None)
    return document


@bp.get("/openapi.json")
@public
def openapi():
    """The OpenAPI document (no token needed)."""
    return jsonify(openapi_document())
