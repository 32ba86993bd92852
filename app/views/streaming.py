"""Server-sent event streams over the process's LiveHub, shared by the pages and the API.

A stream subscribes first, then replays from the database what the client missed
(everything after its ``Last-Event-ID``), then goes live; a row that arrives both ways
is sent once (the cursor skips what it covers). The request holds no database
connection while it waits: the hub reads the rows. Heartbeat comments keep proxies
from closing an idle stream; a closed tab ends the generator at the next write, which
drops the subscription. Streams end after ``ROOKERY_SSE_MAX_SECONDS`` (the browser
reconnects at once with its cursor), so a gunicorn thread is never held forever.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Response, current_app, request, stream_with_context

from app import live
from app.extensions import db

logger = logging.getLogger(__name__)

Render = Callable[[live.Message], Iterable[tuple[str, str]]]


class StreamsFull(Exception):
    """Too many live streams on this web process."""


def client_cursor() -> live.Cursor | None:
    """The cursor a reconnecting client sent (header, or ?last_event_id= from rookery.js)."""
    return live.Cursor.parse(
        request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    )


def format_event(event: str, data: str, event_id: str | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in (data.splitlines() or [""]))
    return "\n".join(lines) + "\n\n"


def json_data(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def subscribe(run_id: int | None, kinds: Iterable[str]) -> live.Subscription:
    """A mailbox on this process's hub; StreamsFull when the process is at its limit."""
    hub = live.hub_for(current_app)
    limit = current_app.config["ROOKERY_SSE_MAX_CLIENTS"]
    if hub.subscriber_count >= limit:
        raise StreamsFull(f"This web process already serves {limit} live streams.")
    return hub.subscribe(run_id, kinds)


def sse_response(
    sub: live.Subscription,
    *,
    cursor: live.Cursor,
    replay: list[live.Message],
    render: Render,
    opening: Iterable[tuple[str, str]] = (),
    until: Callable[[live.Message], bool] | None = None,
    stop_after_replay: bool = False,
) -> Response:
    """Stream ``opening`` events, the ``replay`` rows, then live messages for ``sub``.

    ``render`` turns a message into (event name, data) pairs; ``until`` ends the stream
    after a message it accepts (the API closes a finished run's stream), and
    ``stop_after_replay`` right after the replay. The caller did its database reads
    before calling: the session is released here.
    """
    db.session.close()  # hand the connection back: the stream itself needs none
    heartbeat = current_app.config["ROOKERY_SSE_HEARTBEAT_SECONDS"]
    lifetime = current_app.config["ROOKERY_SSE_MAX_SECONDS"]

    def generate() -> Iterator[str]:
        position = cursor
        ends_at = time.monotonic() + lifetime
        try:
            yield "retry: 2000\n\n"
            chunks = [format_event(e, d, str(position)) for e, d in opening]
            for message in replay:
                position = position.advanced(message)
                chunks.extend(format_event(e, d, str(position)) for e, d in render(message))
            if chunks:
                yield "".join(chunks)
            if stop_after_replay:
                return
            while time.monotonic() < ends_at:
                batch = sub.get(timeout=min(heartbeat, max(0.1, ends_at - time.monotonic())))
                if not batch:
                    yield ": keepalive\n\n"
                    continue
                chunks = []
                finished = False
                for message in batch:
                    if message.kind == "resync":
                        finished = True  # the client reconnects with its cursor
                        break
                    if position.has_seen(message):
                        continue
                    position = position.advanced(message)
                    chunks.extend(format_event(e, d, str(position)) for e, d in render(message))
                    if until is not None and until(message):
                        finished = True
                        break
                if chunks:
                    yield "".join(chunks)
                if finished:
                    return
        finally:
            sub.close()

    response = Response(stream_with_context(generate()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
