#!/usr/bin/env python
"""Live-updates benchmark: 200 SSE viewers of one run, and the runs page at 100k runs.

    python bench/live.py [--clients N] [--lines N] [--rate R] [--servers werkzeug,gunicorn]

Sets up its own database as bench/pipeline.py does (embedded PostgreSQL in a temporary
folder when DATABASE_URL is unset; else a database of its own on that server), migrates
it, creates a viewer with ``rookery user create``, starts a real web process and logs in
through the login form (CSRF token, session cookie). Then, in one run:

1. Runs page, empty database: p95 of ``GET /runs`` (page one), ``/runs?status=...`` and
   a deep keyset page ``/runs?before=<id>``, each ``--page-requests`` times after a
   warm-up, one keep-alive connection, one request at a time; then the same with 100
   runs (each page shows a full page of 50 rows).
2. SSE fan-out, per web server (``rookery web``: werkzeug, threaded; and gunicorn
   ``--workers 1 --threads 256``): a ``noop`` run is started (no worker: it stays
   QUEUED), a client process (``bench/live.py --client-process``, asyncio, one socket
   per viewer) opens ``--clients`` streams ``GET /runs/<id>/stream`` and reports once
   every one answered 200 and sent its ``retry:`` line. A writer in this process then
   commits ``--lines`` log rows at ``--rate`` per second (``INSERT INTO job_logs``, one
   transaction each; the table's trigger sends the NOTIFY), noting ``time.time()`` after
   each COMMIT; every client notes when the ``event: log`` carrying the line arrived.
   Latency = arrival - commit, over every (client, line) pair; every client must get
   every line. Meanwhile a sampler counts the web process's PostgreSQL connections in
   ``pg_stat_activity`` (the web process runs with its own ``PGAPPNAME``).
3. 100k runs and 1M log lines are bulk-inserted with generate_series (the NOTIFY
   triggers disabled for the load), VACUUM ANALYZEd, and the runs pages timed again.

Prints the figures, then one JSON line per figure (lower is better for all of them):
``sse_p95_ms`` (target < 100 ms; and every line at every client), ``web_pg_connections``
(target <= pool size + 1), both also with a ``_gunicorn`` suffix, ``runs_page_p95_ratio``
(loaded p95 / empty p95, worst of the three pages; target <= 2) and
``runs_page_p95_ratio_vs_full_page`` (loaded p95 / p95 with one full page of runs: the
database's share, rendering held equal; target <= 2).
Exit code 0 when the benchmark ran (a missed target is ``"pass": false``), 1 when it
could not (set-up failed, the web server did not start, no client could connect).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
for _path in (str(REPO), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

BENCH = "live"
DEFAULT_CLIENTS = 200
DEFAULT_LINES = 200
DEFAULT_RATE = 20.0
DEFAULT_RUNS = 100_000
DEFAULT_LOGS_PER_RUN = 10
DEFAULT_PAGE_REQUESTS = 200
PAGE_WARMUP = 5
WARMUP_LINES = 5  # untimed lines first: the hub's first query, the template's first rendering
SSE_TARGET_MS = 100.0
RATIO_TARGET = 2.0
SAMPLE_SECONDS = 0.1
LINE_TAG = "bench-line"
SERVERS = ("werkzeug", "gunicorn")
GUNICORN_THREADS = 256

# ------------------------------------------------------------------ the client process
#
# ``python bench/live.py --client-process --port P --path /runs/1/stream --cookie C --count N
#   --lines L --out FILE``: opens N SSE streams on one asyncio loop (one socket each, no
# thread per viewer, so 2 cores are left to the server), prints ``READY <opened> <failed>``
# once each has answered 200 and sent ``retry:`` (or failed), then records when each
# ``event: log`` of a ``bench-line <seq>`` arrives. Ends when every client has every line,
# or when "stop" arrives on stdin; writes its findings to FILE as JSON.

LOG_EVENT = re.compile(
    rb'event: log\ndata: [^\n]*id="log-(\d+)"[^\n]*' + LINE_TAG.encode() + rb" (\d+)"
)


class StreamClient(asyncio.Protocol):
    """One viewer: a GET as a browser's EventSource sends it, then SSE events as they come."""

    def __init__(self, index: int, request: bytes, crowd: Crowd) -> None:
        self.index = index
        self.request = request
        self.crowd = crowd
        self.raw = b""  # bytes as received (headers, then chunked framing)
        self.buffer = b""  # the event stream itself
        self.chunked = False
        self.status: int | None = None
        self.opened = False
        self.closed = False
        self.failed = False
        self.arrivals: dict[int, float] = {}
        self.transport: asyncio.Transport | None = None
        #: set once the stream is open or has failed
        self.settled = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.status is None:
            self.raw += data
            head, sep, rest = self.raw.partition(b"\r\n\r\n")
            if not sep:
                return
            try:
                self.status = int(head.split(b" ", 2)[1])
            except (IndexError, ValueError):
                self.status = 0
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            self.raw = b""
            if self.status != 200:
                self.crowd.failed(self, f"HTTP {self.status}: {rest[:200]!r}")
                assert self.transport is not None
                self.transport.close()
                return
            data = rest
        if self.chunked:
            self.raw += data
            self._dechunk()
        else:
            self.buffer += data
        while True:
            block, sep, rest = self.buffer.partition(b"\n\n")
            if not sep:
                return
            self.buffer = rest
            if not self.opened and block.startswith(b"retry:"):
                self.opened = True
                self.crowd.opened(self)
                continue
            match = LOG_EVENT.search(block)
            if match and int(match.group(2)) not in self.arrivals:
                self.arrivals[int(match.group(2))] = now
                if len(self.arrivals) == self.crowd.lines:
                    self.crowd.complete(self)

    def _dechunk(self) -> None:
        """Move the payload of every complete chunk of ``raw`` to ``buffer``."""
        while True:
            line_end = self.raw.find(b"\r\n")
            if line_end < 0:
                return
            size = int(self.raw[:line_end].split(b";")[0], 16)
            start = line_end + 2
            if len(self.raw) < start + size + 2:
                return
            self.buffer += self.raw[start : start + size]
            self.raw = self.raw[start + size + 2 :]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened:
            self.crowd.failed(self, f"closed before the stream opened ({exc})")
        elif len(self.arrivals) < self.crowd.lines:
            self.crowd.closed_early += 1


@dataclass
class Crowd:
    """Every viewer of the client process, and what they have seen so far."""

    lines: int
    count: int
    clients: list[StreamClient] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    n_opened: int = 0
    n_failed: int = 0
    n_complete: int = 0
    closed_early: int = 0
    all_settled: asyncio.Event = field(default_factory=asyncio.Event)
    all_complete: asyncio.Event = field(default_factory=asyncio.Event)

    def opened(self, client: StreamClient) -> None:
        self.n_opened += 1
        client.settled.set()
        self._check()

    def failed(self, client: StreamClient, why: str) -> None:
        if client.opened or client.failed:
            return
        client.failed = True
        client.settled.set()
        self.n_failed += 1
        if len(self.errors) < 5:
            self.errors.append(f"client {client.index}: {why}")
        self._check()

    def complete(self, _client: StreamClient) -> None:
        self.n_complete += 1
        self._check()

    def _check(self) -> None:
        if self.n_opened + self.n_failed >= self.count:
            self.all_settled.set()
        if self.n_complete >= self.n_opened and self.all_settled.is_set():
            self.all_complete.set()


async def run_clients(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    crowd = Crowd(lines=args.lines, count=args.count)
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
        f"Accept: text/event-stream\r\nCookie: {args.cookie}\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    stop = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: (sys.stdin.readline(), stop.set()))
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def open_one(index: int) -> None:
        client = StreamClient(index, request, crowd)
        crowd.clients.append(client)
        async with gate:
            try:
                await loop.create_connection(lambda: client, "127.0.0.1", args.port)
            except OSError as exc:
                crowd.failed(client, f"connect: {exc}")
                return
            await client.settled.wait()  # at most C streams opening at once

    started = time.monotonic()
    openers = [asyncio.ensure_future(open_one(i)) for i in range(args.count)]
    try:
        await asyncio.wait_for(crowd.all_settled.wait(), args.open_timeout)
    except TimeoutError:
        crowd.errors.append(f"only {crowd.n_opened} streams open after {args.open_timeout:g}s")
    open_seconds = time.monotonic() - started
    print(f"READY {crowd.n_opened} {crowd.n_failed}", flush=True)
    cpu_at_ready = time.process_time()
    crowd._check()
    done = asyncio.ensure_future(crowd.all_complete.wait())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for task in (done, stopped, *openers):
        task.cancel()
    for client in crowd.clients:
        if client.transport is not None:
            client.transport.close()
    return {
        "opened": crowd.n_opened,
        "failed": crowd.n_failed,
        "errors": crowd.errors,
        "closed_early": crowd.closed_early,
        "open_seconds": open_seconds,
        "arrivals": [
            {str(seq): at for seq, at in c.arrivals.items()} for c in crowd.clients if c.opened
        ],
        "cpu_seconds_live": time.process_time() - cpu_at_ready,
    }


def client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="live.py --client-process")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--lines", type=int, required=True)
    parser.add_argument("--connect-concurrency", type=int, required=True)
    parser.add_argument("--open-timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(run_clients(args))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--client-process"]:
    # A client process stops here, before the benchmark side's imports (psycopg, Flask).
    sys.exit(client_main(sys.argv[2:]))


# ---------------------------------------------------------------- the benchmark side

import contextlib  # noqa: E402
import http.client  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
from http.cookies import SimpleCookie  # noqa: E402
from urllib.parse import urlencode  # noqa: E402

import psutil  # noqa: E402
import psycopg  # noqa: E402

# The database, process handling and table helpers are pipeline.py's.
from pipeline import (  # noqa: E402
    BenchError,
    Worker,
    Workers,
    app_log_to_file,
    cleanup,
    create_bench_job,
    open_database,
    print_table,
    run_guarded,
    say,
)

from app.views.runs import PAGE_SIZE  # noqa: E402

USERNAME = "bench-viewer"
PASSWORD = "bench-viewer-password-1234"
STATUS_FILTER = "COMPLETED_FAILURE"
CLI = [sys.executable, "-m", "app.cli"]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0.95 for p95); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pool_size() -> int:
    from app.database import engine_options

    return int(engine_options()["pool_size"])


# ------------------------------------------------------------------------ web server


@dataclass
class Server:
    kind: str  # "werkzeug" or "gunicorn"
    port: int
    worker: Worker
    app_name: str  # PGAPPNAME: how its PostgreSQL connections are told apart
    cookie: str = ""

    @property
    def label(self) -> str:
        if self.kind == "gunicorn":
            return f"gunicorn --workers 1 --threads {GUNICORN_THREADS}"
        return "rookery web (werkzeug, threaded)"

    def processes(self) -> list[psutil.Process]:
        try:
            parent = psutil.Process(self.worker.process.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


def web_env(db_uri: str, tmp: Path, app_name: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": db_uri,
            "ROOKERY_INSTANCE": str(tmp / "instance"),
            "PGAPPNAME": app_name,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def create_user(db_uri: str, tmp: Path) -> None:
    """``rookery user create`` a viewer, as an admin would."""
    result = subprocess.run(
        [*CLI, "user", "create", USERNAME, "--role", "viewer", "--password-stdin"],
        input=PASSWORD + "\n",
        env=web_env(db_uri, tmp, "rookery-bench-cli"),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise BenchError(f"rookery user create failed:\n{result.stdout}{result.stderr}")


def start_server(kind: str, workers: Workers, db_uri: str, tmp: Path) -> Server:
    port = free_port()
    app_name = f"rookery-bench-web-{kind}"
    if kind == "werkzeug":
        cmd = [*CLI, "web", "--host", "127.0.0.1", "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "--workers", "1", "--threads"]
        cmd += [str(GUNICORN_THREADS), "--bind", f"127.0.0.1:{port}", "app:create_app()"]
    worker = workers.start(kind, cmd, web_env(db_uri, tmp, app_name), tmp / f"web-{kind}.log")
    server = Server(kind, port, worker, app_name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise BenchError(
                f"the {kind} web server exited with code {worker.process.returncode}:\n"
                f"{worker.tail()}"
            )
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/login")
            if conn.getresponse().status == 200:
                conn.close()
                server.cookie = login(port)
                return server
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"the {kind} web server did not answer within 60s:\n{worker.tail()}")


def _cookies(response: http.client.HTTPResponse, jar: dict[str, str]) -> None:
    for header in response.headers.get_all("Set-Cookie") or []:
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            jar[name] = morsel.value


def login(port: int) -> str:
    """Log in through the form (CSRF token from the page); the Cookie header to send."""
    jar: dict[str, str] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    _cookies(response, jar)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if not token:
        raise BenchError("the login page has no CSRF token")
    body = urlencode({"csrf_token": token.group(1), "username": USERNAME, "password": PASSWORD})
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
    }
    conn.request("POST", "/login", body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    _cookies(response, jar)
    if response.status != 302:
        raise BenchError(f"logging in answered HTTP {response.status}, not a redirect")
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    conn.request("GET", "/runs", headers={"Cookie": cookie})
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise BenchError(f"GET /runs after logging in answered HTTP {response.status}")
    return cookie


# ------------------------------------------------------------------------ runs page


def page_urls(runs: int) -> dict[str, str]:
    return {
        "page one": "/runs",
        "status filter": f"/runs?status={STATUS_FILTER}",
        "deep keyset page": f"/runs?before={runs // 2}",
    }


def time_pages(server: Server, urls: dict[str, str], requests: int) -> dict[str, list[float]]:
    """Milliseconds per request for each URL (one keep-alive connection, after a warm-up)."""
    timings: dict[str, list[float]] = {}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Cookie": server.cookie}
    for name, url in urls.items():
        samples: list[float] = []
        for n in range(PAGE_WARMUP + requests):
            started = time.perf_counter()
            conn.request("GET", url, headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise BenchError(f"GET {url} answered HTTP {response.status}: {body[:300]!r}")
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            if n >= PAGE_WARMUP:
                samples.append(elapsed)
        timings[name] = samples
    conn.close()
    return timings


def count_rows(server: Server, url: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", url, headers={"Cookie": server.cookie})
    body = conn.getresponse().read().decode()
    conn.close()
    return body.count('<tr id="run-row-')


BULK_RUNS = """
    INSERT INTO job_runs (job_id, job_name, job_type, params, status, priority, attempt,
                          max_attempts, created_at, queued_at, started_at, finished_at,
                          duration_ms, progress_done, progress_total, triggered_by, signal_id,
                          message)
    SELECT %(job_id)s, 'bench-noop', 'noop', '{"seconds": 0}'::jsonb,
           CASE WHEN g %% %(fail_every)s = 0 THEN 'COMPLETED_FAILURE'
                WHEN g %% 37 = 0 THEN 'COMPLETED_PARTIAL_FAILURE'
                WHEN g %% 101 = 0 THEN 'FAILED_UNEXPECTED'
                ELSE 'COMPLETED_SUCCESS' END,
           5, 1, 1, t, t, t + interval '1 second', t + interval '3 seconds', 3000, 1, 1,
           'schedule', md5(g::text), 'done'
    FROM generate_series(1, %(runs)s) AS g,
         LATERAL (SELECT now() - (%(runs)s - g) * interval '30 seconds' AS t) AS at
"""
BULK_LOGS = """
    INSERT INTO job_logs (at, level, log_type, source, message, run_id, job_id, job_type)
    SELECT r.started_at + k * interval '10 ms', CASE WHEN k = 10 THEN 'warning' ELSE 'info' END,
           'job', 'worker.job.noop', 'bulk line ' || k || ' of run ' || r.id, r.id, r.job_id,
           'noop'
    FROM job_runs r, generate_series(1, %(per_run)s) AS k
    WHERE r.id > %(after)s
"""


def bulk_load(
    dsn: str, job_id: int, runs: int, per_run: int, fail_every: int = 10
) -> tuple[float, int, int]:
    """Insert ``runs`` finished runs and ``per_run`` log lines each, then ANALYZE.

    Every ``fail_every``-th run is COMPLETED_FAILURE (the status filter's page), a few
    others COMPLETED_PARTIAL_FAILURE or FAILED_UNEXPECTED, the rest COMPLETED_SUCCESS.

    The NOTIFY triggers are off for the load (a web process is listening: a million
    notifications would be a different benchmark); foreign keys are checked as usual.
    """
    started = time.monotonic()
    with psycopg.connect(dsn) as conn:
        after = conn.execute("SELECT coalesce(max(id), 0) FROM job_runs").fetchone()[0]
        conn.execute("ALTER TABLE job_runs DISABLE TRIGGER rookery_job_runs_notify")
        conn.execute("ALTER TABLE job_logs DISABLE TRIGGER rookery_job_logs_notify")
        conn.execute(BULK_RUNS, {"job_id": job_id, "runs": runs, "fail_every": fail_every})
        conn.execute(BULK_LOGS, {"per_run": per_run, "after": after})
        conn.execute("ALTER TABLE job_runs ENABLE TRIGGER rookery_job_runs_notify")
        conn.execute("ALTER TABLE job_logs ENABLE TRIGGER rookery_job_logs_notify")
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE job_runs, job_logs")
        n_runs, n_logs = conn.execute(
            "SELECT (SELECT count(*) FROM job_runs), (SELECT count(*) FROM job_logs)"
        ).fetchone()
    return time.monotonic() - started, n_runs, n_logs


# ------------------------------------------------------------------------ SSE fan-out


@dataclass
class Fanout:
    """One SSE measurement on one web server."""

    server: str
    clients: int
    opened: int
    failed: int
    open_seconds: float
    lines: int
    latencies_ms: list[float]
    first_ms: list[float]  # per line: the first client's latency
    last_ms: list[float]  # per line: the last client's latency
    missing: int  # (client, line) pairs never received
    closed_early: int
    errors: list[str]
    conn_open_peak: int  # web process's PG connections while the streams opened
    conn_live_peak: int  # ... while they were all open and lines flowed
    conn_idle_hub: int  # ... at the end (pool at rest + the LISTEN connection)
    web_cpu_percent: float  # of one core, during the writes
    client_cpu_seconds: float
    write_seconds: float

    @property
    def p95(self) -> float:
        return percentile(self.latencies_ms, 0.95)


class ConnectionSampler:
    """Counts, every 0.1 s, the PostgreSQL connections whose application_name is ours."""

    def __init__(self, dsn: str, app_name: str) -> None:
        self.dsn = dsn
        self.app_name = app_name
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def count(self, conn: psycopg.Connection[Any]) -> int:
        return int(
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (self.app_name,),
            ).fetchone()[0]
        )

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                self.samples.append((time.monotonic(), self.count(conn)))
                self._stop.wait(SAMPLE_SECONDS)

    def peak(self, start: float, end: float) -> int:
        return max((n for t, n in self.samples if start <= t <= end), default=0)


def start_noop_run(job_id: int) -> int:
    from app.extensions import db
    from app.models import Job
    from app.services import runs as run_service

    run = run_service.start_run(db.session.get(Job, job_id), triggered_by="bench", actor="bench")
    run_id = int(run.id)
    db.session.remove()
    return run_id


LOG_INSERT = """
    INSERT INTO job_logs (at, level, log_type, source, message, run_id, job_id, job_type)
    VALUES (now(), 'info', 'job', 'worker.job.noop', %s, %s, %s, 'noop')
"""


def write_lines(
    dsn: str, run_id: int, job_id: int, lines: int, rate: float, tag: str
) -> dict[int, float]:
    """Commit ``lines`` log rows at ``rate`` per second; time.time() after each COMMIT."""
    committed: dict[int, float] = {}
    with psycopg.connect(dsn) as conn:
        started = time.monotonic()
        for seq in range(lines):
            delay = started + seq / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            conn.execute(LOG_INSERT, (f"{tag} {seq}", run_id, job_id))
            conn.commit()
            committed[seq] = time.time()
    return committed


def read_ready(process: subprocess.Popen[str], timeout: float) -> tuple[int, int]:
    """Wait for the client process's ``READY <opened> <failed>`` line."""
    assert process.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    line = box[0] if box else ""
    parts = line.split()
    if len(parts) != 3 or parts[0] != "READY":
        raise BenchError(f"the client process did not report its streams open (got {line!r})")
    return int(parts[1]), int(parts[2])


def measure_fanout(
    server: Server, dsn: str, job_id: int, tmp: Path, args: argparse.Namespace
) -> Fanout:
    run_id = start_noop_run(job_id)
    out = tmp / f"clients-{server.kind}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--client-process"]
    cmd += ["--port", str(server.port), "--path", f"/runs/{run_id}/stream"]
    cmd += ["--cookie", server.cookie, "--count", str(args.clients), "--lines", str(args.lines)]
    cmd += ["--connect-concurrency", str(args.connect_concurrency), "--out", str(out)]
    with ConnectionSampler(dsn, server.app_name) as sampler:
        launched = time.monotonic()
        clients = subprocess.Popen(
            cmd,
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(tmp / f"clients-{server.kind}.log").open("ab"),
            text=True,
            start_new_session=True,
        )
        try:
            opened, failed = read_ready(clients, 90)
            ready = time.monotonic()
            say(f"    {opened} streams open ({failed} failed) in {ready - launched:.1f}s")
            if opened == 0:
                raise BenchError(f"no SSE client could open a stream on {server.label}")
            # untimed: the hub's first read of job_logs, the template's first rendering
            write_lines(dsn, run_id, job_id, WARMUP_LINES, args.rate, "bench-warmup")
            time.sleep(1.0)
            say(f"    writing {args.lines} log lines at {args.rate:g}/s ...")
            web_cpu_before = server.cpu_seconds()
            write_started = time.monotonic()
            committed = write_lines(dsn, run_id, job_id, args.lines, args.rate, LINE_TAG)
            write_seconds = time.monotonic() - write_started
            with contextlib.suppress(subprocess.TimeoutExpired):
                clients.wait(timeout=10)  # it ends by itself once every client has every line
            web_cpu = server.cpu_seconds() - web_cpu_before
            web_wall = time.monotonic() - write_started
            live_end = time.monotonic()
            time.sleep(0.5)
            if clients.poll() is None:
                assert clients.stdin is not None
                clients.stdin.write("stop\n")
                clients.stdin.flush()
                clients.wait(timeout=30)
            with psycopg.connect(dsn, autocommit=True) as conn:
                idle = sampler.count(conn)
        finally:
            if clients.poll() is None:
                clients.kill()
                clients.wait()
    if not out.exists():
        raise BenchError(f"the client process wrote no results (exit code {clients.returncode})")
    result = json.loads(out.read_text())
    latencies: list[float] = []
    firsts: list[float] = []
    lasts: list[float] = []
    missing = 0
    per_line: dict[int, list[float]] = {seq: [] for seq in committed}
    for arrivals in result["arrivals"]:
        for seq, commit_at in committed.items():
            at = arrivals.get(str(seq))
            if at is None:
                missing += 1
                continue
            ms = (at - commit_at) * 1000
            latencies.append(ms)
            per_line[seq].append(ms)
    for values in per_line.values():
        if values:
            firsts.append(min(values))
            lasts.append(max(values))
    missing += (args.clients - result["opened"]) * args.lines
    return Fanout(
        server=server.label,
        clients=args.clients,
        opened=result["opened"],
        failed=result["failed"],
        open_seconds=result["open_seconds"],
        lines=args.lines,
        latencies_ms=latencies,
        first_ms=firsts,
        last_ms=lasts,
        missing=missing,
        closed_early=result["closed_early"],
        errors=result["errors"],
        conn_open_peak=sampler.peak(launched, ready),
        conn_live_peak=sampler.peak(ready, live_end),
        conn_idle_hub=idle,
        web_cpu_percent=100 * web_cpu / web_wall,
        client_cpu_seconds=result["cpu_seconds_live"],
        write_seconds=write_seconds,
    )


# --------------------------------------------------------------------------- report


def figure(name: str, value: float, target: float, passed: bool) -> dict[str, Any]:
    return {"bench": BENCH, "figure": name, "value": value, "target": target, "pass": passed}


def report(
    args: argparse.Namespace,
    fanouts: list[Fanout],
    kinds: list[str],
    pages: dict[str, dict[str, list[float]]],
    loaded_rows: dict[str, int],
    load: tuple[float, int, int],
) -> list[dict[str, Any]]:
    limit = pool_size() + 1
    figures: list[dict[str, Any]] = []

    def verdict(ok: bool) -> str:
        return "pass" if ok else "MISS"

    say()
    say(
        f"  SSE: {args.clients} clients on one run, {args.lines} lines at {args.rate:g}/s; "
        "latency = arrival - COMMIT, ms, over every (client, line) pair"
    )
    rows: list[tuple[str, ...]] = [
        ("server", "open", "p50", "p95", "p99", "max", "missing", "PG conns", "web CPU", "")
    ]
    for fan, kind in zip(fanouts, kinds, strict=True):
        p95 = fan.p95
        complete = fan.missing == 0 and fan.opened == fan.clients
        sse_ok = complete and p95 < SSE_TARGET_MS
        conn_ok = fan.conn_live_peak <= limit
        suffix = "" if kind == "werkzeug" else f"_{kind}"
        figures.append(figure(f"sse_p95_ms{suffix}", round(p95, 1), SSE_TARGET_MS, sse_ok))
        figures.append(figure(f"web_pg_connections{suffix}", fan.conn_live_peak, limit, conn_ok))
        rows.append(
            (
                fan.server,
                f"{fan.opened}/{fan.clients}",
                f"{percentile(fan.latencies_ms, 0.5):.1f}",
                f"{p95:.1f}",
                f"{percentile(fan.latencies_ms, 0.99):.1f}",
                f"{max(fan.latencies_ms, default=math.nan):.1f}",
                str(fan.missing),
                f"{fan.conn_live_peak} (<= {limit})",
                f"{fan.web_cpu_percent:.0f}%",
                verdict(sse_ok and conn_ok),
            )
        )
    print_table(rows)
    for fan in fanouts:
        say(f"  {fan.server}:")
        say(
            f"    per line, first client p50/p95 {percentile(fan.first_ms, 0.5):.1f}/"
            f"{percentile(fan.first_ms, 0.95):.1f} ms, last client p50/p95 "
            f"{percentile(fan.last_ms, 0.5):.1f}/{percentile(fan.last_ms, 0.95):.1f} ms "
            "(first: NOTIFY + hub + one render; last - first: the fan-out)"
        )
        say(
            f"    streams opened in {fan.open_seconds:.1f}s; web PG connections: "
            f"{fan.conn_open_peak} at most while they opened, {fan.conn_live_peak} at most "
            f"while all were open, {fan.conn_idle_hub} at rest after; web process CPU "
            f"{fan.web_cpu_percent:.0f}% of a core while writing, client process "
            f"{fan.client_cpu_seconds:.1f}s CPU once the streams were open, for "
            f"{fan.write_seconds:.1f}s of writes"
        )
        if fan.closed_early or fan.errors:
            say(f"    streams closed early: {fan.closed_early}; errors: {fan.errors}")

    seconds, n_runs, n_logs = load
    say()
    say(
        f"  runs page: over {args.page_requests} requests each (after {PAGE_WARMUP} "
        f"untimed); empty: no runs; full page: {2 * PAGE_SIZE} runs; loaded: {n_runs:,} runs "
        f"and {n_logs:,} log lines (bulk-loaded and analyzed in {seconds:.1f}s)"
    )
    rows = [
        (
            "page (p50/p95 ms)",
            "empty",
            "full page",
            "loaded",
            "loaded rows",
            "p95 / empty",
            "p95 / full page",
        )
    ]
    ratios: list[float] = []
    db_ratios: list[float] = []
    for name in pages["loaded"]:
        p50 = {state: percentile(times[name], 0.5) for state, times in pages.items()}
        p95 = {state: percentile(times[name], 0.95) for state, times in pages.items()}
        ratios.append(p95["loaded"] / p95["empty"])
        db_ratios.append(p95["loaded"] / p95["full page"])
        rows.append(
            (
                name,
                *(f"{p50[state]:.1f}/{p95[state]:.1f}" for state in pages),
                str(loaded_rows[name]),
                f"{ratios[-1]:.2f}",
                f"{db_ratios[-1]:.2f}",
            )
        )
    print_table(rows)
    worst, worst_db = round(max(ratios), 3), round(max(db_ratios), 3)
    figures.append(figure("runs_page_p95_ratio", worst, RATIO_TARGET, worst <= RATIO_TARGET))
    figures.append(
        figure("runs_page_p95_ratio_vs_full_page", worst_db, RATIO_TARGET, worst_db <= RATIO_TARGET)
    )
    say(
        f"  worst ratio to the empty database {worst:.2f} (target <= {RATIO_TARGET:g}): "
        f"{verdict(worst <= RATIO_TARGET)}; to a database of one full page "
        f"{worst_db:.2f}: {verdict(worst_db <= RATIO_TARGET)}"
    )
    say(
        "  (an empty page renders no rows: the ratio to it includes rendering 50 rows; the "
        "ratio to a full page is what 100k runs cost the database)"
    )
    say()
    return figures


# ----------------------------------------------------------------------------- main


def _dispose(app: Any) -> None:
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def run(args: argparse.Namespace, tmp: Path, workers: Workers) -> list[dict[str, Any]]:
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    say(
        f"Rookery live benchmark: {args.clients} SSE clients, {args.lines} lines at "
        f"{args.rate:g}/s, servers {', '.join(kinds)}; runs page at {args.runs:,} runs"
    )
    setup_started = time.monotonic()
    app_log_to_file(tmp / "bench-app.log")
    bench_db = open_database(tmp)
    cleanup.append(bench_db.drop)
    app = create_app({"DATABASE_URL": bench_db.uri, "ROOKERY_INSTANCE": str(tmp / "instance")})
    cleanup.append(lambda: _dispose(app))
    fanouts: list[Fanout] = []
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.session.remove()
        dsn = app.config["ROOKERY_PG_DSN"]
        job_id = create_bench_job()
        create_user(bench_db.uri, tmp)
        say(
            f"  database: {bench_db.kind} PostgreSQL, migrated, viewer created in "
            f"{time.monotonic() - setup_started:.1f}s"
        )
        urls = page_urls(args.runs)
        servers: dict[str, Server] = {}
        first = kinds[0]
        servers[first] = start_server(first, workers, bench_db.uri, tmp)
        say(f"  {servers[first].label} on port {servers[first].port}, logged in")
        say("  runs page, empty database ...")
        pages = {"empty": time_pages(servers[first], urls, args.page_requests)}
        # One page of runs, every other one failed: each of the three pages shows a full
        # page, as on the loaded database, so rendering costs the same on both.
        bulk_load(dsn, job_id, 2 * PAGE_SIZE, args.logs_per_run, fail_every=2)
        say(f"  runs page, {2 * PAGE_SIZE} runs (a full page each) ...")
        pages["full page"] = time_pages(servers[first], urls, args.page_requests)
        for kind in kinds:
            if kind not in servers:
                servers[kind] = start_server(kind, workers, bench_db.uri, tmp)
                say(f"  {servers[kind].label} on port {servers[kind].port}, logged in")
            say(f"  SSE fan-out on {servers[kind].label} ...")
            fanouts.append(measure_fanout(servers[kind], dsn, job_id, tmp, args))
            if kind != first:
                workers.stop(servers[kind].worker)
        say(f"  bulk-loading {args.runs:,} runs, {args.logs_per_run} log lines each ...")
        load = bulk_load(dsn, job_id, args.runs, args.logs_per_run)
        say("  runs page, loaded database ...")
        pages["loaded"] = time_pages(servers[first], urls, args.page_requests)
        loaded_rows = {name: count_rows(servers[first], url) for name, url in urls.items()}
        workers.stop(servers[first].worker)
    return report(args, fanouts, kinds, pages, loaded_rows, load)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="SSE viewers")
    parser.add_argument(
        "--lines", type=int, default=DEFAULT_LINES, help="log lines written (timed)"
    )
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="lines per second")
    parser.add_argument(
        "--connect-concurrency",
        type=int,
        default=50,
        help="streams the clients open at once (default 50)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="web servers to measure, in order: werkzeug (rookery web), gunicorn "
        "(default both; the runs page is timed on the first)",
    )
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="runs bulk-loaded")
    parser.add_argument(
        "--logs-per-run", type=int, default=DEFAULT_LOGS_PER_RUN, help="log lines per loaded run"
    )
    parser.add_argument(
        "--page-requests",
        type=int,
        default=DEFAULT_PAGE_REQUESTS,
        help="timed requests per runs page",
    )
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    if not kinds or set(kinds) - set(SERVERS) or len(set(kinds)) != len(kinds):
        parser.error(f"--servers: a comma-separated list of {', '.join(SERVERS)}")
    if min(args.clients, args.lines, args.runs, args.page_requests, args.logs_per_run) < 1:
        parser.error("counts must be at least 1")
    return run_guarded("rookery-bench-live-", lambda tmp, s: run(args, tmp, s[0]), [Workers()])


if __name__ == "__main__":
    sys.exit(main())
