"""A run's live event stream for scripts: status, log lines, events and device results
as server-sent events with JSON data, token-authenticated (the seed's Subscribe).

It rides the web process's LiveHub like the run page does (app/views/streaming.py):
the stream replays from the database what comes after the client's cursor (from the
run's beginning by default), then goes live, and ends with an ``end`` event once the
run has reached its final status. ``rookery run logs --follow`` reads the database
directly; this is the same feed over HTTP.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pydantic
from flask import abort, request

from app import live, logs
from app.api import schemas as s
from app.api.base import ID, bp, requires
from app.errors import ValidationError
from app.models import Role, RunStatus
from app.services import logs as log_service
from app.services import runs
from app.views import streaming
from app.views.runs import replay_since

logger = logging.getLogger(__name__)

#: message kinds of the hub as the API names them
KIND_NAMES = {"run": "status", "log": "log", "event": "event", "result": "result"}
HUB_KINDS = {name: kind for kind, name in KIND_NAMES.items()}

STATUS_FIELDS = (
    "status",
    "attempt",
    "max_attempts",
    "progress_done",
    "progress_total",
    "queued_at",
    "scheduled_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "message",
    "error",
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _shown(message: live.Message) -> dict[str, Any]:
    """A message's row as every reader of a stream may see it (one rendering serves all
    roles, so a log line's admin-only meta is left out for everyone: GET /logs has it)."""
    if message.kind != "log" or not isinstance(message.data.get("meta"), dict):
        return message.data
    return {**message.data, "meta": logs.visible_meta(message.data["meta"], admin=False)}


def status_data(run_id: int, row: dict[str, Any]) -> dict[str, Any]:
    data = {name: _plain(row.get(name)) for name in STATUS_FIELDS}
    data["run_id"] = run_id
    data["progress"] = {"done": row.get("progress_done"), "total": row.get("progress_total")}
    data["final"] = RunStatus(row["status"]).is_final
    return data


def _query() -> s.StreamQuery:
    """The query string, validated here: spectree would read the whole (endless) answer."""
    raw: dict[str, Any] = {
        key: request.args.getlist(key) if key in ("kinds", "event_types") else value
        for key, value in request.args.items()
    }
    try:
        return s.StreamQuery.model_validate(raw)
    except pydantic.ValidationError as exc:
        fields = {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.errors()}
        raise ValidationError("Invalid stream parameters.", fields=fields) from None


#: the operation in the OpenAPI document (added by hand: see _query)
OPENAPI = {
    "/api/v1/runs/{run_id}/stream": {
        "get": {
            "tags": ["runs"],
            "summary": "A run's live events as server-sent events",
            "description": "Messages `status`, `log`, `event`, `result` (JSON data), then "
            "`end` once the run is final. Each `id` is a cursor: send it back as "
            "`Last-Event-ID` to resume. Filters: `kinds`, `event_types`, `level`.",
            "operationId": "stream_run",
            "parameters": [
                {"name": "run_id", "in": "path", "required": True, "schema": {"type": "integer"}},
                {
                    "name": "kinds",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["status", "log", "event", "result"]},
                    },
                },
                {
                    "name": "event_types",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "array", "items": {"type": "string"}},
                },
                {
                    "name": "level",
                    "in": "query",
                    "required": False,
                    "schema": {
                        "type": "string",
                        "enum": ["debug", "info", "warning", "error", "critical"],
                    },
                },
                {
                    "name": "last_event_id",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The event stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "401": {"description": "No valid token"},
                "404": {"description": "No such run"},
                "422": {"description": "Invalid parameters"},
                "503": {"description": "This web process serves its most streams"},
            },
        }
    }
}


@bp.get(f"/runs/<{ID}:run_id>/stream")
@requires(Role.VIEWER)
def stream_run(run_id: int):
    """Server-sent events of one run: ``status``, ``log``, ``event``, ``result``, then ``end``.

    Each message's ``id`` is a cursor; send it back as ``Last-Event-ID`` (or
    ``last_event_id``) to resume without gaps. ``data`` is a JSON object.
    """
    q = _query()
    run = runs.get_run(run_id)
    kinds = set(q.kinds or KIND_NAMES.values())
    levels = set(log_service.levels_from(q.level) or ())
    event_types = set(q.event_types or ())
    cursor = streaming.client_cursor() or live.Cursor()
    try:
        sub = streaming.subscribe(run_id, {HUB_KINDS[k] for k in kinds} | {"run"})
    except streaming.StreamsFull as exc:
        abort(503, str(exc))
    replay = replay_since(run_id, cursor)
    opening_row = {c.key: getattr(run, c.key) for c in run.__table__.columns}
    opening = [("status", streaming.json_data(status_data(run_id, opening_row)))]
    finished = run.run_status.is_final

    def wanted(message: live.Message) -> bool:
        if message.kind == "log":
            return "log" in kinds and (not levels or message.data["level"] in levels)
        if message.kind == "event":
            return "event" in kinds and (not event_types or message.data["type"] in event_types)
        if message.kind == "result":
            return "result" in kinds
        return True

    def render(message: live.Message) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        if message.kind == "run":
            data = status_data(run_id, message.data)
            if "status" in kinds:
                pairs.append(("status", streaming.json_data(data)))
            if data["final"]:
                pairs.append(("end", streaming.json_data({"run_id": run_id, **data})))
        elif wanted(message):
            payload = message.rendered("api", lambda m: streaming.json_data(_plain(_shown(m))))
            pairs.append((KIND_NAMES[message.kind], payload))
        return pairs

    def ends(message: live.Message) -> bool:
        return message.kind == "run" and RunStatus(message.data["status"]).is_final

    if finished:
        # Nothing more will happen: replay, then say so, then close.
        final = live.Message("run", run_id, 0, opening_row)
        replay = [*replay, final]
    return streaming.sse_response(
        sub,
        cursor=cursor,
        replay=replay,
        render=render,
        opening=opening,
        until=ends,
        stop_after_replay=finished,
    )
