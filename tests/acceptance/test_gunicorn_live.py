"""Live pages under gunicorn with threads, the README's production command.

Two gunicorn workers each keep one LISTEN connection; a log line committed by
another process reaches a stream opened on whichever worker answered, and a
reconnect with Last-Event-ID replays what the client missed.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import sys
import time

import pytest

from tests.acceptance.conftest import (
    HEALTH_TIMEOUT,
    Launcher,
    free_port,
    login_http,
    wait_http,
)

pytestmark = pytest.mark.acceptance

PASSWORD = "gunicorn-viewer-pw"

# Creates a queued noop run and prints its id (no worker runs here: it stays queued).
START_RUN = """
from app import create_app
from app.services import jobs, runs
app = create_app()
with app.app_context():
    job = jobs.create_job(name="watched", job_type="noop", actor="test")
    print(runs.start_run(job, triggered_by="test").id)
"""

# Commits one log line for a run, from a process of its own.
WRITE_LOG = """
import sys
from app import create_app, logs
from app.extensions import db
app = create_app()
with app.app_context():
    logs.write(level="info", log_type="system", source="test", message=sys.argv[2],
               run_id=int(sys.argv[1]))
    db.session.commit()
"""


def read_until(sock: socket.socket, pattern: str, timeout: float = 20.0) -> str:
    """Read an HTTP response off ``sock`` until ``pattern`` shows in it."""
    sock.settimeout(timeout)
    text = ""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, text, re.S):
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} never arrived:\n{text[-2000:]}")
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"stream closed before {pattern!r}:\n{text[-2000:]}")
        text += chunk.decode("utf-8", "replace")
    return text


def open_stream(port: int, path: str, cookie: str, last_event_id: str | None = None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    headers = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
    if last_event_id:
        headers += f"Last-Event-ID: {last_event_id}\r\n"
    sock.sendall((headers + "\r\n").encode())
    return sock


def test_streams_under_gunicorn_with_threads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    launcher = Launcher(tmp_path)
    try:
        env = launcher.env(launcher.instance())
        assert launcher.run(["db", "upgrade"], env).returncode == 0
        created = launcher.python(
            "import io, sys\n"
            f"sys.stdin = io.StringIO({PASSWORD!r} + '\\n')\n"
            "from app.cli import main\n"
            "main(['user', 'create', 'gus', '--role', 'viewer', '--password-stdin'])",
            env=env,
        )
        assert created.returncode == 0, created.describe()
        started = launcher.python(START_RUN, env=env)
        assert started.returncode == 0, started.describe()
        run_id = int(started.stdout.strip().splitlines()[-1])

        port = free_port()
        server = launcher.start(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                "2",
                "--threads",
                "16",
                "--bind",
                f"127.0.0.1:{port}",
                "app:create_app()",
            ],
            env,
            name="gunicorn",
        )
        base = f"http://127.0.0.1:{port}"
        wait_http(
            f"{base}/health", HEALTH_TIMEOUT, ready=lambda r: r.status in (200, 503), proc=server
        )
        session = login_http(base, "gus", PASSWORD)
        assert session.response.status == 200
        cookie = "; ".join(
            f"{c.name}={c.value}"
            for handler in session.opener.handlers
            for c in getattr(handler, "cookiejar", [])
        )

        # Several streams, spread over both workers by the kernel.
        socks = [open_stream(port, f"/runs/{run_id}/stream", cookie) for _ in range(6)]
        for sock in socks:
            read_until(sock, r"text/event-stream.*retry: \d+")
        written = launcher.python(WRITE_LOG, str(run_id), "hello from elsewhere", env=env)
        assert written.returncode == 0, written.describe()
        texts = [read_until(sock, "hello from elsewhere") for sock in socks]
        cursor = re.findall(r"id: (\d+\.\d+\.\d+)\nevent: log", texts[0])[-1]
        for sock in socks:
            sock.close()

        # Missed while away: a reconnect with its cursor gets it, and not the old line.
        away = launcher.python(WRITE_LOG, str(run_id), "while you were away", env=env)
        assert away.returncode == 0, away.describe()
        again = open_stream(port, f"/runs/{run_id}/stream", cookie, last_event_id=cursor)
        text = read_until(again, "while you were away")
        assert "hello from elsewhere" not in text
        again.close()

        # The API stream with a token works on the same server.
        token_out = launcher.run(["token", "create", "gus"], env)
        assert token_out.returncode == 0, token_out.describe()
        token = token_out.stdout.strip().splitlines()[-1]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        connection.request(
            "GET", f"/api/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"}
        )
        answer = connection.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["status"] == "QUEUED"
        connection.close()
    finally:
        launcher.close()
