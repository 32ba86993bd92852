"""Live streams: one LISTEN connection per process, rows replayed after Last-Event-ID,
heartbeats, a stream lifetime, and no database connection held while a client waits."""

from __future__ import annotations

import contextlib
import http.client
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from werkzeug.serving import make_server

from app import live, logs
from app.extensions import db
from app.services import runs
from tests.conftest import make_config
from tests.integration.helpers import drain, make_job


class Stream:
    """An SSE request over a real socket, read by a thread; ``until`` waits for a pattern."""

    def __init__(self, base: tuple[str, int], path: str, headers: dict[str, str]) -> None:
        self.text = ""
        self.error: Exception | None = None
        self.connection = http.client.HTTPConnection(*base, timeout=30)
        self.connection.request("GET", path, headers=headers)
        self._socket = self.connection.sock
        self.response = self.connection.getresponse()
        self.status_code = self.response.status
        self.mimetype = (self.response.getheader("Content-Type") or "").split(";")[0]
        self._chunks: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                chunk = self.response.read1(65536)
                if not chunk:
                    break
                self._chunks.put(chunk.decode())
        except Exception as exc:  # closed under the reader by close(), or the server ended
            self.error = exc
        finally:
            self._chunks.put(None)

    def until(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text, re.S)
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} never arrived; got:\n{self.text[-2000:]}")
            try:
                chunk = self._chunks.get(timeout=remaining)
            except queue.Empty:
                continue
            if chunk is None:
                raise AssertionError(
                    f"stream ended ({self.error!r}) before {pattern!r}; got:\n{self.text[-2000:]}"
                )
            self.text += chunk

    def ended(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = self._chunks.get(timeout=0.2)
            except queue.Empty:
                continue
            if chunk is None:
                return True
            self.text += chunk
        return False

    def close(self) -> None:
        """Like closing the tab: the socket goes away."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self.connection.close()
        self._socket.close()


def log_in(app, client, auth, base: tuple[str, int]) -> Viewer:
    auth.create("watcher", "watch-pw-123", "viewer")
    auth.login("watcher", "watch-pw-123")
    return Viewer(base, client.get_cookie("session").value)


@pytest.fixture
def viewer_client(app, client, auth) -> Iterator[Viewer]:
    for base in serve(app):
        yield log_in(app, client, auth, base)


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.close()


def serve(app) -> Iterator[tuple[str, int]]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ("127.0.0.1", server.server_port)
    finally:
        server.shutdown()
        server.server_close()


class Viewer:
    """A logged-in person's session cookie, used on a real HTTP server."""

    def __init__(self, base: tuple[str, int], cookie: str) -> None:
        self.base = base
        self.cookie = cookie

    def open(self, path: str, opened: list[Stream], **headers: str) -> Stream:
        stream = Stream(self.base, path, {"Cookie": f"session={self.cookie}", **headers})
        opened.append(stream)
        return stream


def open_stream(viewer: Viewer, path: str, opened: list[Stream], **headers: str) -> Stream:
    stream = viewer.open(path, opened, **headers)
    assert stream.status_code == 200, stream.status_code
    assert stream.mimetype == "text/event-stream"
    stream.until(r"retry: \d+")
    return stream


def write_log(run_id: int, message: str) -> int:
    row = logs.write(level="info", log_type="system", source="test", message=message, run_id=run_id)
    db.session.commit()
    return row.id


def test_a_run_stream_delivers_status_results_logs_and_events(app, viewer_client, streams):
    from app.services import inventory

    with app.app_context():
        inventory.create_device(
            name="edge-1", host="127.0.0.1", port=22, platform="cisco_ios", tags=["t"], actor="x"
        )
        run_id = runs.start_run(
            make_job("live", job_type="devjob", target_tags=["t"]), triggered_by="test"
        ).id
    stream = open_stream(viewer_client, f"/runs/{run_id}/stream", streams)
    with app.app_context():
        log_id = write_log(run_id, "hello <b>operators</b>")
    found = stream.until(r"id: (\d+)\.(\d+)\.(\d+)\nevent: log\ndata: (.*?)\n\n")
    assert int(found.group(1)) == log_id
    assert "hello &lt;b&gt;operators&lt;/b&gt;" in found.group(4)  # escaped HTML
    with app.app_context():
        drain(app)
    stream.until(r"event: status\ndata: .*Success")
    stream.until(r"event: result\ndata: .*<tr id=\"result-\d+\" data-device-id=\"\d+\">.*edge-1")
    stream.until(r"event: event\ndata: .*job\.completed")
    stream.until(r"visiting edge-1")


def test_reconnecting_with_last_event_id_replays_only_what_was_missed(app, viewer_client, streams):
    with app.app_context():
        run_id = runs.start_run(make_job("replay"), triggered_by="test").id
        first = write_log(run_id, "line one")
        write_log(run_id, "line two")
        write_log(run_id, "line three")
    stream = open_stream(
        viewer_client, f"/runs/{run_id}/stream", streams, **{"Last-Event-ID": f"{first}.0.0"}
    )
    stream.until("line three")
    assert "line two" in stream.text and "line one" not in stream.text
    assert "event: status" in stream.text  # the current status comes first on a resume
    assert "job.created" in stream.text  # events after event cursor 0 are replayed too
    # rookery.js passes the cursor in the query string when htmx opens a new EventSource.
    again = open_stream(
        viewer_client, f"/runs/{run_id}/stream?last_event_id={first + 1}.0.0", streams
    )
    again.until("line three")
    assert "line two" not in again.text
    # A garbled cursor is ignored: the stream simply starts live.
    garbled = open_stream(
        viewer_client, f"/runs/{run_id}/stream", streams, **{"Last-Event-ID": "x.y"}
    )
    with app.app_context():
        write_log(run_id, "line four")
    garbled.until("line four")
    assert "line one" not in garbled.text
    with app.app_context():
        runs.cancel_run(run_id, actor="test")
    garbled.until(r"event: status\ndata: .*Cancelled")


def test_many_viewers_share_one_listen_connection_and_hold_no_pool_connection(
    app, viewer_client, streams
):
    app.config["ROOKERY_SSE_HEARTBEAT_SECONDS"] = 1  # a closed socket shows at the next write
    with app.app_context():
        run_id = runs.start_run(make_job("crowd"), triggered_by="test").id
    crowd = [open_stream(viewer_client, f"/runs/{run_id}/stream", streams) for _ in range(6)]
    crowd.append(open_stream(viewer_client, "/runs/stream", streams))
    with app.app_context():
        assert db.engine.pool.checkedout() == 0
        listeners = db.session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
                " AND datname = current_database()"
            ),
            {"name": live.APPLICATION_NAME},
        ).scalar_one()
        db.session.rollback()
        assert listeners == 1
        write_log(run_id, "to everyone")
        runs.cancel_run(run_id, actor="test")
    for stream in crowd[:-1]:
        stream.until("to everyone")
    crowd[-1].until(rf"event: run-{run_id}\ndata: .*Cancelled")
    hub = live.hub_for(app)
    assert hub.subscriber_count == 7
    for stream in crowd:
        stream.close()
    deadline = time.monotonic() + 5
    while hub.subscriber_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.subscriber_count == 0  # a closed tab frees its slot


def test_heartbeats_and_stream_lifetime(app_factory, database_url, tmp_path, jobs_dir, streams):
    from tests.conftest import AuthActions

    short = app_factory(
        make_config(
            database_url,
            tmp_path / "short",
            ROOKERY_JOBS_PATH=str(jobs_dir),
            ROOKERY_SSE_HEARTBEAT_SECONDS=1,
            ROOKERY_SSE_MAX_SECONDS=3,
            ROOKERY_SSE_MAX_CLIENTS=1,
        )
    )
    client = short.test_client()
    with short.app_context():
        run_id = runs.start_run(make_job("hb"), triggered_by="test").id
    for base in serve(short):
        viewer = log_in(short, client, AuthActions(short, client), base)
        stream = open_stream(viewer, f"/runs/{run_id}/stream", streams)
        full = viewer.open(f"/runs/{run_id}/stream", streams)
        assert full.status_code == 503  # the process is at its limit of one stream
        stream.until(": keepalive")
        assert stream.ended(timeout=10), "the stream should end after its lifetime"
    with short.app_context():
        runs.cancel_run(run_id, actor="test")


def test_a_lost_listen_connection_tells_streams_to_resync(app, viewer_client, streams):
    with app.app_context():
        run_id = runs.start_run(make_job("lost"), triggered_by="test").id
    stream = open_stream(viewer_client, f"/runs/{run_id}/stream", streams)
    with app.app_context():
        db.session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": live.APPLICATION_NAME},
        )
        db.session.commit()
    # The stream ends so the browser reconnects with its cursor and misses nothing.
    assert stream.ended(timeout=15)
    cursor = re.findall(r"id: (\S+)", stream.text)
    with app.app_context():
        write_log(run_id, "written while nobody listened")
    resumed = open_stream(
        viewer_client,
        f"/runs/{run_id}/stream",
        streams,
        **{"Last-Event-ID": cursor[-1] if cursor else "0.0.0"},
    )
    resumed.until("written while nobody listened")
    with app.app_context():
        write_log(run_id, "and live again")
    resumed.until("and live again")
    assert live.hub_for(app).connected
    with app.app_context():
        runs.cancel_run(run_id, actor="test")
    resumed.until(r"event: status\ndata: .*Cancelled")


@pytest.fixture
def api_token(app) -> str:
    from app.services import tokens, users

    with app.app_context():
        user = users.create_user("script", "script-pw-123", "viewer", actor="test")
        return tokens.create_token(user, "stream", actor="test")[1]


@pytest.fixture
def base(app) -> Iterator[tuple[str, int]]:
    yield from serve(app)


def api_stream(base, path: str, token: str, opened: list[Stream], **headers: str) -> Stream:
    stream = Stream(base, path, {"Authorization": f"Bearer {token}", **headers})
    opened.append(stream)
    return stream


def test_api_stream_replays_a_finished_run_then_ends(app, base, api_token, streams):
    import json

    with app.app_context():
        run_id = runs.start_run(make_job("done"), triggered_by="test").id
        drain(app)
    stream = api_stream(base, f"/api/v1/runs/{run_id}/stream", api_token, streams)
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    assert stream.ended(timeout=10), "a finished run's stream closes after its replay"
    events = re.findall(r"event: (\w+)\ndata: (.*)\n", stream.text)
    names = [name for name, _ in events]
    assert names[0] == "status" and names[-1] == "end"
    assert "log" in names and "event" in names
    end = json.loads(events[-1][1])
    assert end["status"] == "COMPLETED_SUCCESS" and end["final"] is True
    logged = [json.loads(data) for name, data in events if name == "log"]
    assert all(line["run_id"] == run_id for line in logged)
    types = [json.loads(data)["type"] for name, data in events if name == "event"]
    assert types[0] == "job.created" and "job.completed" in types


def test_api_stream_filters_kinds_levels_and_event_types_live(app, base, api_token, streams):
    import json

    with app.app_context():
        run_id = runs.start_run(make_job("filtered"), triggered_by="test").id
    stream = api_stream(
        base,
        f"/api/v1/runs/{run_id}/stream?kinds=log&kinds=event&level=warning"
        "&event_types=job.cancelled",
        api_token,
        streams,
    )
    assert stream.status_code == 200
    stream.until("event: status")
    with app.app_context():
        write_log(run_id, "just info")
        row = logs.write(
            level="warning", log_type="system", source="t", message="look here", run_id=run_id
        )
        db.session.commit()
        warning_id = row.id
        runs.cancel_run(run_id, actor="test")
    stream.until("event: end")
    assert stream.ended(timeout=10)
    assert "look here" in stream.text and "just info" not in stream.text
    assert "job.created" not in stream.text and "job.cancelled" in stream.text
    # Resuming after the warning's cursor sends nothing of it again.
    cursor = re.search(rf"id: ({warning_id}\.\d+\.\d+)\nevent: log", stream.text).group(1)
    again = api_stream(
        base, f"/api/v1/runs/{run_id}/stream", api_token, streams, **{"Last-Event-ID": cursor}
    )
    assert again.ended(timeout=10)
    assert (
        "look here" not in again.text
        and json.loads(re.findall(r"event: end\ndata: (.*)\n", again.text)[-1])["status"]
        == "CANCELLED"
    )


def test_api_stream_needs_a_token_and_a_known_run(app, base, api_token, streams):
    with app.app_context():
        run_id = runs.start_run(make_job("guarded"), triggered_by="test").id
    nobody = Stream(base, f"/api/v1/runs/{run_id}/stream", {})
    streams.append(nobody)
    assert nobody.status_code == 401
    missing = api_stream(base, "/api/v1/runs/99999/stream", api_token, streams)
    assert missing.status_code == 404
    bad_level = api_stream(base, f"/api/v1/runs/{run_id}/stream?level=loud", api_token, streams)
    assert bad_level.status_code == 422
    with app.app_context():
        runs.cancel_run(run_id, actor="test")
