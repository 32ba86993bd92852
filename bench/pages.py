#!/usr/bin/env python
"""Pages benchmark (issue 17): the pages and API answers of a 10,000-device backup run.

    python bench/pages.py [--devices 10000] [--requests 40] [--budget 300]

Sets up its own database as bench/pipeline.py does (embedded PostgreSQL in a temporary
folder when DATABASE_URL is unset; else a database of its own on that server, dropped
at the end) and migrates it. Then:

1. Inventory: ``--devices`` devices imported with ``inventory.import_csv`` (one CSV, as
   a user imports a fleet), in sites of 40 (2 core routers, 4 distribution and 34
   access switches), each tagged with its site, region and role and ``backup-nightly``
   (a few hundred distinct tags at 10,000 devices). An admin created with
   ``users.create_user`` and an API token with ``tokens.create_token``; a
   ``config_backup`` job over ``backup-nightly`` saved with ``jobs.create_job`` and
   started with ``runs.start_run`` (its run row, events and audit entry are the app's).
2. The run, finished, written as the worker writes it (``runner/units.py``'s per-device
   statement, ``JobLogger``, ``lifecycle.end``), in bulk: one result per device
   (COPY), about 96 % ``success`` with the device's config as output (bench/_fastssh.py's
   ``FleetConfigs``: the 30-100 KB IOS configs the fleet benchmark's emulator prints),
   the rest ``unreachable`` or ``failed`` without output; one ``job.progress`` event and
   two log lines per device (its "started" line, then "Fetched N lines" or its error),
   the store's "Config store: ..." line, ``job.started`` and ``job.completed``; the run
   COMPLETED_PARTIAL_FAILURE with the backup's summary as its result, its queue job
   removed (no worker runs). The NOTIFY triggers are off for the load; the trigger that
   keeps ``device_backups`` runs as usual. Then VACUUM ANALYZE.
3. A real ``rookery web`` (werkzeug, threaded: what ``run.sh`` serves) on a free port of
   127.0.0.1; the admin logs in through the form (CSRF token, session cookie). Each URL
   gets 3 untimed requests, then ``--requests`` timed ones, one at a time, the URLs in
   turn (round robin: background load hits every page alike), one keep-alive
   connection for the pages (cookie), one for the API (``Authorization: Bearer``) and
   one logged out: the run page ``/runs/<id>``, the device list ``/devices``, the
   dashboard ``/``, ``GET /api/v1/runs/<id>``, ``GET /api/v1/runs/<id>/results?limit=100``
   (skipped, with a note, where the endpoint does not exist),
   ``GET /api/v1/devices?limit=100``; the baseline, the login page ``/login`` (a small
   template, a CSRF token, no query), and ``/health`` for reading. Every answer must be
   200; the first ones are checked (the run's id, 100 items, ...). A page whose timed
   requests have taken more than ``--budget`` seconds gets no more (at least 5).

Prints a table (median, p95, bytes, the web process's and PostgreSQL's CPU per request)
and the web process's peak RSS, then one JSON line per figure: ``p95_ms_<page>``
(target < 300 ms, the issue's "p95 under 300 ms" for the run page, device list,
dashboard and ``GET /api/v1/runs/{id}``; the two API lists are held to the same bar),
``p95_ms_baseline`` (the login page; no target) and ``worst_p95_vs_baseline`` (the
slowest page's p95 / the baseline's, same run; no target).
Exit code 0 when the benchmark ran (a missed target is ``"pass": false``), 1 when it
could not (set-up failed, the web server did not start, a page did not answer 200).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import http.client
import io
import json
import random
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
for _path in (str(REPO), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psutil  # noqa: E402
import psycopg  # noqa: E402

# The configs are the fleet benchmark's; the web process and the table are live.py's
# and pipeline.py's.
from _fastssh import FleetConfigs  # noqa: E402
from live import CLI, _cookies, free_port, percentile, web_env  # noqa: E402
from pipeline import (  # noqa: E402
    BenchError,
    Worker,
    Workers,
    app_log_to_file,
    cleanup,
    open_database,
    print_table,
    run_guarded,
    say,
)

BENCH = "pages"
DEFAULT_DEVICES = 10_000
DEFAULT_REQUESTS = 40
DEFAULT_BUDGET = 300.0
WARMUP = 3
MIN_SAMPLES = 5
TARGET_MS = 300.0
ADMIN = "bench-admin"
PASSWORD = "bench-admin-password-1234"
JOB_NAME = "nightly-config-backup"
BACKUP_TAG = "backup-nightly"
CREDENTIAL = "fleet-login"
APP_NAME = "rookery-bench-pages"  # the web process's PGAPPNAME: its backends' CPU is counted
SEED = "fleet"  # the configs of bench/fleet.py's emulator
SITE_SIZE = 40
CORE, DISTRIBUTION = 2, 4  # units 0-1 of a site are core routers, 2-5 distribution
CITIES = (
    "ams", "ber", "bos", "chi", "dal", "fra", "lon", "mad", "mil", "nyc",
    "par", "sea", "sfo", "sin", "syd", "tok", "tor", "vie", "waw", "zrh",
)  # fmt: skip
#: the run's timeline: it ended this long before the pages are read
RUN_ENDED_AGO = timedelta(hours=1)
RUN_SECONDS = 320.0  # about the fleet benchmark's 10,000-device run
REFUSAL = "% Invalid input detected at '^' marker."
#: what the pages' rows start with (runs/_result_row.html, _event.html, devices/_device_list.html)
RESULT_ROW = '<tr id="result-'
EVENT_ITEM = 'id="event-'
DEVICE_ROW = '<tr id="device-'


# --------------------------------------------------------------------------- fleet


@dataclass(frozen=True)
class FleetDevice:
    index: int
    name: str
    host: str
    platform: str
    tags: tuple[str, ...]


def fleet(devices: int) -> list[FleetDevice]:
    """The inventory, by index: names, hosts, platforms and tags (the same every run)."""
    out = []
    for i in range(devices):
        site, unit = divmod(i, SITE_SIZE)
        city = CITIES[site % len(CITIES)]
        if unit < CORE:
            role, prefix, platform = "core", "cr", "cisco_xe"
        elif unit < CORE + DISTRIBUTION:
            role, prefix, platform = "distribution", "ds", "cisco_ios"
        else:
            role, prefix, platform = "access", "as", "cisco_ios"
        tags = [f"site-{site:03d}", f"region-{city}", role, BACKUP_TAG]
        if site % 7 == 3:
            tags.append("pci")
        out.append(
            FleetDevice(
                index=i,
                name=f"{city}{site:03d}-{prefix}{unit:02d}",
                host=f"10.{site // 256}.{site % 256}.{unit + 10}",
                platform=platform,
                tags=tuple(tags),
            )
        )
    return out


def import_fleet(devices: list[FleetDevice]) -> dict[str, int]:
    """``inventory.import_csv`` of the fleet, as a user imports one; name -> id."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Device
    from app.services import inventory

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "host", "port", "platform", "tags"])
    for d in devices:
        writer.writerow([d.name, d.host, 22, d.platform, ";".join(d.tags)])
    report = inventory.import_csv(out.getvalue(), actor="bench")
    if not report.ok or report.created != len(devices):
        first = report.errors[0] if report.errors else None
        raise BenchError(
            f"importing {len(devices)} devices created {report.created}"
            + (f"; first error: {first}" if first else "")
        )
    ids = {name: i for name, i in db.session.execute(select(Device.name, Device.id))}
    db.session.remove()
    return ids


@dataclass
class Seeded:
    run_id: int
    job_id: int
    token: str
    devices: int
    tags: int
    by_status: dict[str, int]
    outputs_mb: float = 0.0  # the configs' text
    table_mb: float = 0.0  # device_results on disk (TOAST compressed)
    events: int = 0
    logs: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def create_admin_job_and_run() -> tuple[int, int, str]:
    """The admin and their API token, the backup job, and its run (queued): the app's own
    services. Returns the run's id, the job's id and the token."""
    from app.extensions import db
    from app.models import Role
    from app.services import jobs, tokens, users
    from app.services import runs as run_service

    admin = users.create_user(ADMIN, PASSWORD, Role.ADMIN, actor="bench")
    _, token = tokens.create_token(admin, "bench-pages", actor="bench")
    job = jobs.create_job(
        name=JOB_NAME,
        job_type="config_backup",
        description="Every device's running config, nightly",
        target_tags=[BACKUP_TAG],
        max_parallel=100,
        actor=admin,
    )
    run = run_service.start_run(job, triggered_by=f"user:{ADMIN}", actor=admin)
    ids = (int(run.id), int(job.id))
    db.session.remove()
    return ids[0], ids[1], token


def outcome(i: int) -> str:
    """A device's result: about 2.5 % unreachable, 1 % failed, the rest success."""
    if i % 40 == 17:
        return "unreachable"
    if i % 97 == 5:
        return "failed"
    return "success"


def _jsonb(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def write_run(
    dsn: str, run_id: int, job_id: int, devices: list[FleetDevice], ids: dict[str, int]
) -> Seeded:
    """The run's results, events and log lines as a finished backup leaves them (see the
    module's docstring), in one transaction; then VACUUM ANALYZE."""
    started = time.monotonic()
    configs = FleetConfigs(SEED)
    rng = random.Random("pages")
    order = list(range(len(devices)))
    rng.shuffle(order)  # devices end in no particular order
    commit = hashlib.sha1(f"run {run_id}".encode()).hexdigest()
    total = len(devices)
    with psycopg.connect(dsn) as conn:
        signal_id, queue_job, created = conn.execute(
            "SELECT signal_id, procrastinate_job_id, created_at FROM job_runs WHERE id = %s",
            (run_id,),
        ).fetchone()
        ended = datetime.now(created.tzinfo) - RUN_ENDED_AGO
        run_start = ended - timedelta(seconds=RUN_SECONDS + 10)
        shift = created - (run_start - timedelta(seconds=2))
        conn.execute("ALTER TABLE events DISABLE TRIGGER rookery_events_notify")
        conn.execute("ALTER TABLE job_logs DISABLE TRIGGER rookery_job_logs_notify")
        # start_run's rows (run, job.created, job.queued) move back to the run's start
        conn.execute(
            "UPDATE job_runs SET created_at = created_at - %(s)s, queued_at = queued_at - %(s)s"
            " WHERE id = %(id)s",
            {"s": shift, "id": run_id},
        )
        conn.execute(
            "UPDATE events SET at = at - %(s)s WHERE run_id = %(id)s", {"s": shift, "id": run_id}
        )

        events: list[tuple[Any, ...]] = []
        logs: list[tuple[Any, ...]] = []
        counts: dict[str, int] = {}
        changed: list[str] = []
        output_bytes = 0
        step = RUN_SECONDS / max(1, total)
        with conn.cursor().copy(
            "COPY device_results (run_id, device_id, device_name, status, message, "
            "credential_name, output, data, commit_sha, changed, connect_attempts, "
            "started_at, finished_at, duration_ms) FROM STDIN"
        ) as copy:
            for done, i in enumerate(order, 1):
                d = devices[i]
                device_id = ids[d.name]
                status = outcome(i)
                counts[status] = counts.get(status, 0) + 1
                finished = run_start + timedelta(seconds=5 + done * step)
                duration = 30_000 + i % 500 if status == "unreachable" else 900 + (i * 37) % 2600
                began = finished - timedelta(milliseconds=duration)
                logs.append((began, "debug", f"{d.name}: started ({d.host}:22)", None, device_id))
                if status == "success":
                    text = configs.config(d.name)
                    output_bytes += len(text)
                    lines = text.count("\n")
                    digest = hashlib.sha256(text.encode()).hexdigest()
                    copy.write_row(
                        (run_id, device_id, d.name, status, f"{lines} lines", CREDENTIAL, text,
                         _jsonb({"lines": lines, "sha256": digest}), commit, True, 1, began,
                         finished, duration)
                    )  # fmt: skip
                    changed.append(d.name)
                    logs.append(
                        (finished, "info", f"Fetched {lines} lines from {d.name}",
                         _jsonb({"sha256": digest[:12]}), device_id)
                    )  # fmt: skip
                elif status == "failed":
                    message = f"The device refused the configuration command: {REFUSAL}"
                    copy.write_row(
                        (run_id, device_id, d.name, status, message, CREDENTIAL, None, None,
                         None, None, 1, began, finished, duration)
                    )  # fmt: skip
                    logs.append(
                        (finished, "error",
                         f"{d.name} refused the configuration command: {REFUSAL}", None,
                         device_id)
                    )  # fmt: skip
                else:
                    message = f"Device did not answer: TCP connection to {d.host}:22 timed out"
                    copy.write_row(
                        (run_id, device_id, d.name, status, message, None, None, None, None,
                         None, 3, began, finished, duration)
                    )  # fmt: skip
                    meta = {"error_type": "DEVICE", "exception": "DeviceUnreachable",
                            "status": status}  # fmt: skip
                    logs.append(
                        (finished, "error", f"{d.name}: {message}", _jsonb(meta), device_id)
                    )
                events.append(
                    (finished, "job.progress", "RUNNING", f"{d.name}: {status}", None, None,
                     _jsonb({"device_id": device_id, "device": d.name, "status": status,
                             "done": done, "total": total}))
                )  # fmt: skip
        ok = counts.get("success", 0)
        changed.sort()
        summary = {
            "devices": total,
            "by_status": counts,
            "commit": commit,
            "changed": changed,
            "unchanged": 0,
            "message": f"{len(changed)} config(s) changed",
        }
        message = f"{ok} of {total} device(s) succeeded; {summary['message']}"
        logs.append(
            (ended - timedelta(seconds=2), "info",
             f"Config store: {len(changed)} changed, 0 unchanged, commit {commit[:10]}",
             _jsonb({"changed": changed, "commit": commit}), None)
        )  # fmt: skip
        events.insert(
            0,
            (run_start, "job.started", "RUNNING", f"Started on bench-worker ({total} devices)",
             None, None, _jsonb({"worker": "bench-worker", "attempt": 1})),
        )  # fmt: skip
        final = "COMPLETED_PARTIAL_FAILURE" if ok < total else "COMPLETED_SUCCESS"
        events.append(
            (ended, "job.completed", final, message, _jsonb(summary), _jsonb(summary), None)
        )
        with conn.cursor().copy(
            "COPY events (at, type, status, message, result, post_data, data, run_id, job_id,"
            " signal_id) FROM STDIN"
        ) as copy:
            for row in events:
                copy.write_row((*row, run_id, job_id, signal_id))
        with conn.cursor().copy(
            "COPY job_logs (at, level, message, meta, device_id, log_type, source, run_id, "
            "job_id, job_type) FROM STDIN"
        ) as copy:
            for row in logs:
                copy.write_row(
                    (*row, "job", "worker.job.config_backup", run_id, job_id, "config_backup")
                )
        conn.execute(
            """
            UPDATE job_runs SET status = %(status)s, started_at = %(start)s,
                   attempt_started_at = %(start)s, finished_at = %(end)s,
                   duration_ms = %(ms)s, progress_done = %(n)s, progress_total = %(n)s,
                   message = %(message)s, result = %(result)s, worker_name = 'bench-worker',
                   metrics = %(metrics)s
             WHERE id = %(id)s
            """,
            {
                "status": final,
                "start": run_start,
                "end": ended,
                "ms": int((ended - run_start).total_seconds() * 1000),
                "n": total,
                "message": message,
                "result": _jsonb(summary),
                "metrics": _jsonb({"resolved": total, "total": total, "percentage": 100.0}),
                "id": run_id,
            },
        )
        if queue_job is not None:  # no worker takes it: the queue is as after the run
            conn.execute("DELETE FROM procrastinate_jobs WHERE id = %s", (queue_job,))
        conn.execute("ALTER TABLE events ENABLE TRIGGER rookery_events_notify")
        conn.execute("ALTER TABLE job_logs ENABLE TRIGGER rookery_job_logs_notify")
        conn.commit()
    written = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "VACUUM ANALYZE devices, tags, device_tags, job_runs, device_results, "
            "device_backups, events, job_logs"
        )
        n_events, n_logs, table = conn.execute(
            "SELECT (SELECT count(*) FROM events WHERE run_id = %(id)s),"
            " (SELECT count(*) FROM job_logs WHERE run_id = %(id)s),"
            " pg_total_relation_size('device_results')",
            {"id": run_id},
        ).fetchone()
    return Seeded(
        run_id=run_id,
        job_id=job_id,
        token="",
        devices=total,
        tags=0,
        by_status=counts,
        outputs_mb=output_bytes / 2**20,
        table_mb=table / 2**20,
        events=n_events,
        logs=n_logs,
        seconds={"run rows": written - started, "vacuum analyze": time.monotonic() - written},
    )


# ------------------------------------------------------------------------ web server


@dataclass
class Web:
    port: int
    worker: Worker
    cookie: str = ""

    def cpu_seconds(self) -> float:
        try:
            times = psutil.Process(self.worker.process.pid).cpu_times()
        except psutil.NoSuchProcess:
            return 0.0
        return times.user + times.system

    def peak_rss_mib(self) -> float:
        """VmHWM: the most memory the web process has held so far."""
        path = Path(f"/proc/{self.worker.process.pid}/status")
        for line in path.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def start_web(workers: Workers, db_uri: str, tmp: Path) -> Web:
    """``rookery web`` on a free port of 127.0.0.1, the admin logged in through the form."""
    port = free_port()
    cmd = [*CLI, "web", "--host", "127.0.0.1", "--port", str(port)]
    worker = workers.start("web", cmd, web_env(db_uri, tmp, APP_NAME), tmp / "web.log")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise BenchError(
                f"the web server exited with code {worker.process.returncode}:\n{worker.tail()}"
            )
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return Web(port, worker, login(port))
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"the web server did not answer within 60s:\n{worker.tail()}")


def login(port: int) -> str:
    """Log the admin in through the form (CSRF token from the page); the Cookie header."""
    jar: dict[str, str] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login")
    response = conn.getresponse()
    page = response.read().decode()
    _cookies(response, jar)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if not token:
        raise BenchError("the login page has no CSRF token")
    body = urlencode({"csrf_token": token.group(1), "username": ADMIN, "password": PASSWORD})
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
    }
    conn.request("POST", "/login", body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    _cookies(response, jar)
    conn.close()
    if response.status != 302:
        raise BenchError(f"logging in answered HTTP {response.status}, not a redirect")
    return "; ".join(f"{k}={v}" for k, v in jar.items())


class Client:
    """One keep-alive connection to the web process, sending ``headers`` each time."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def get(self, url: str) -> tuple[float, int, bytes]:
        """Milliseconds for the whole answer (request sent to the body's last byte)."""
        started = time.perf_counter()
        self.conn.request("GET", url, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.will_close:
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        return elapsed, response.status, body

    def close(self) -> None:
        self.conn.close()


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving the web process (its PGAPPNAME)."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.procs: list[psutil.Process] = []

    def refresh(self) -> None:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,)
        ).fetchall()
        self.procs = []
        for (pid,) in rows:
            with contextlib.suppress(psutil.Error):
                self.procs.append(psutil.Process(pid))

    def seconds(self) -> float:
        total = 0.0
        for proc in self.procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def close(self) -> None:
        self.conn.close()


# ----------------------------------------------------------------------------- pages


@dataclass
class Page:
    key: str  # the figure's name: p95_ms_<key>
    label: str
    url: str
    client: str  # "page" (the session cookie), "api" (the token) or "anonymous"
    target: float | None = TARGET_MS
    check: Any = None  # body -> "what it shows" (raises BenchError when wrong)
    samples_ms: list[float] = field(default_factory=list)
    web_cpu_ms: list[float] = field(default_factory=list)
    pg_cpu_ms: list[float] = field(default_factory=list)
    size: int = 0
    shows: str = ""
    skipped: str = ""

    @property
    def p50(self) -> float:
        return percentile(self.samples_ms, 0.5)

    @property
    def p95(self) -> float:
        return percentile(self.samples_ms, 0.95)


def _count(body: bytes, marker: str) -> int:
    return body.count(marker.encode())


def pages_for(seeded: Seeded, first_device: str, limit: int) -> list[Page]:
    run_id = seeded.run_id
    items = min(limit, seeded.devices)

    def html_run(body: bytes) -> str:
        if JOB_NAME.encode() not in body:
            raise BenchError(f"the run page of run {run_id} does not name its job")
        return f"{_count(body, RESULT_ROW):,} results, {_count(body, EVENT_ITEM):,} events"

    def html_devices(body: bytes) -> str:
        if first_device.encode() not in body:
            raise BenchError(f"the device list does not show the first device {first_device}")
        return f"{_count(body, DEVICE_ROW):,} devices, {_count(body, '<option'):,} options"

    def html_dashboard(body: bytes) -> str:
        if JOB_NAME.encode() not in body:
            raise BenchError("the dashboard does not list the run")
        return ""

    def api_run(body: bytes) -> str:
        found = json.loads(body)
        if found.get("id") != run_id:
            raise BenchError(f"GET /api/v1/runs/{run_id} answered run {found.get('id')}")
        total = (found.get("summary") or {}).get("total")
        embedded = len(found.get("results") or [])
        return f"summary of {total:,}" if total is not None else f"{embedded:,} results embedded"

    def api_list(what: str) -> Any:
        def check(body: bytes) -> str:
            found = json.loads(body)
            got = len(found.get("items") or [])
            if got != items:
                raise BenchError(f"{what} answered {got} items, not {items}")
            return f"{got} items" + (", next cursor" if found.get("next") else "")

        return check

    def health(body: bytes) -> str:
        return f"status {json.loads(body).get('status')}"

    def login_page(body: bytes) -> str:
        if b'name="csrf_token"' not in body:
            raise BenchError("the login page has no CSRF token")
        return "the form"

    return [
        Page("run_page", "run page", f"/runs/{run_id}", "page", check=html_run),
        Page("device_list", "device list", "/devices", "page", check=html_devices),
        Page("dashboard", "dashboard", "/", "page", check=html_dashboard),
        Page("api_run", "API run", f"/api/v1/runs/{run_id}", "api", check=api_run),
        Page(
            "api_run_results",
            "API run results",
            f"/api/v1/runs/{run_id}/results?limit={limit}",
            "api",
            check=api_list("the run's results"),
        ),
        Page(
            "api_devices",
            "API devices",
            f"/api/v1/devices?limit={limit}",
            "api",
            check=api_list("the device list"),
        ),
        Page("baseline", "baseline: login page", "/login", "anonymous", None, login_page),
        Page("health", "health", "/health", "anonymous", None, health),
    ]


def measure(
    pages: list[Page], clients: dict[str, Client], web: Web, pg: BackendCpu, args: Any
) -> None:
    """Warm-ups, then ``--requests`` rounds over the pages; every answer must be 200."""

    def fetch(page: Page) -> tuple[float, bytes]:
        elapsed, status, body = clients[page.client].get(page.url)
        if status != 200:
            raise BenchError(f"GET {page.url} answered HTTP {status}: {body[:300]!r}")
        return elapsed, body

    for page in pages:
        if page.key == "api_run_results":
            _, status, body = clients["api"].get(page.url)
            if status == 404:  # the run exists (its own answer came first): no such endpoint
                page.skipped = "endpoint not there yet (404)"
                continue
        for n in range(WARMUP):
            _, body = fetch(page)
            if n == 0:
                page.shows = page.check(body)
            page.size = len(body)
    live = [p for p in pages if not p.skipped]
    for _ in range(args.requests):
        pg.refresh()
        for page in list(live):
            web_before, pg_before = web.cpu_seconds(), pg.seconds()
            elapsed, body = fetch(page)
            page.web_cpu_ms.append((web.cpu_seconds() - web_before) * 1000)
            page.pg_cpu_ms.append((pg.seconds() - pg_before) * 1000)
            page.samples_ms.append(elapsed)
            page.size = len(body)
            if len(page.samples_ms) >= MIN_SAMPLES and sum(page.samples_ms) / 1000 > args.budget:
                live.remove(page)
        if not live:
            break


# ---------------------------------------------------------------------------- report


def figure(name: str, value: float, target: float | None, passed: bool) -> dict[str, Any]:
    return {"bench": BENCH, "figure": name, "value": value, "target": target, "pass": passed}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def report(args: Any, seeded: Seeded, pages: list[Page]) -> list[dict[str, Any]]:
    baseline = next(p for p in pages if p.key == "baseline")
    say()
    say(
        f"  {seeded.devices:,} devices ({seeded.tags} tags); run #{seeded.run_id}: "
        + ", ".join(f"{n:,} {s}" for s, n in sorted(seeded.by_status.items()))
        + f"; outputs {seeded.outputs_mb:,.0f} MiB of text, device_results "
        f"{seeded.table_mb:,.0f} MiB on disk; {seeded.events:,} events and {seeded.logs:,} "
        "log lines of the run"
    )
    say(
        f"  timed requests per page: up to {args.requests} after {WARMUP} untimed, in turn, "
        f"at most {args.budget:g} s of them per page; ms; CPU = the web process's and its "
        "PostgreSQL backends' CPU per request (mean; the kernel counts it in 10 ms ticks)"
    )
    rows: list[tuple[str, ...]] = [
        ("page", "request", "n", "median", "p95", "max", "bytes", "web CPU", "PG CPU",
         "p95 / base", "shows", "")
    ]  # fmt: skip
    figures: list[dict[str, Any]] = []
    worst: Page | None = None
    for page in pages:
        if page.skipped:
            rows.append((page.label, page.url, "-", "-", "-", "-", "-", "-", "-", "-",
                         page.skipped, "skipped"))  # fmt: skip
            continue
        p95 = page.p95
        ratio = p95 / baseline.p95
        if page.target is None:
            verdict = ""
        else:
            verdict = "pass" if p95 < page.target else "MISS"
            if worst is None or p95 > worst.p95:
                worst = page
        rows.append(
            (
                page.label,
                page.url,
                str(len(page.samples_ms)),
                f"{page.p50:,.1f}",
                f"{p95:,.1f}",
                f"{max(page.samples_ms):,.1f}",
                f"{page.size:,}",
                f"{_mean(page.web_cpu_ms):,.0f}",
                f"{_mean(page.pg_cpu_ms):,.0f}",
                f"{ratio:,.1f}",
                page.shows,
                verdict,
            )
        )
        if page.target is None:
            continue
        figures.append(
            figure(f"p95_ms_{page.key}", round(p95, 1), page.target, p95 < (page.target or 0))
        )
    print_table(rows)
    figures.append(figure("p95_ms_baseline", round(baseline.p95, 1), None, True))
    if worst is not None:
        ratio = round(worst.p95 / baseline.p95, 3)
        say(f"  slowest page: {worst.label}, p95 {ratio:,.1f} times the baseline's")
        figures.append(figure("worst_p95_vs_baseline", ratio, None, True))
    for page in pages:
        if page.skipped:
            say(f"  {page.label} ({page.url}): skipped, {page.skipped}")
    say()
    return figures


# ----------------------------------------------------------------------------- main


def _dispose(app: Any) -> None:
    from app.extensions import db

    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def seed(args: argparse.Namespace, tmp: Path) -> tuple[str, str, Seeded, list[FleetDevice]]:
    """A migrated database holding the fleet and its finished run; its URI and DSN."""
    from flask_migrate import upgrade

    from app import create_app
    from app.extensions import db

    started = time.monotonic()
    app_log_to_file(tmp / "bench-app.log")
    bench_db = open_database(tmp)
    cleanup.append(bench_db.drop)
    app = create_app({"DATABASE_URL": bench_db.uri, "ROOKERY_INSTANCE": str(tmp / "instance")})
    cleanup.append(lambda: _dispose(app))
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        db.session.remove()
        dsn = app.config["ROOKERY_PG_DSN"]
        migrated = time.monotonic() - started
        say(f"  database: {bench_db.kind} PostgreSQL, migrated in {migrated:.1f}s")
        devices = fleet(args.devices)
        clock = time.monotonic()
        ids = import_fleet(devices)
        imported = time.monotonic() - clock
        clock = time.monotonic()
        run_id, job_id, token = create_admin_job_and_run()
        services = time.monotonic() - clock
    seeded = write_run(dsn, run_id, job_id, devices, ids)
    seeded.token = token
    seeded.tags = len({t for d in devices for t in d.tags})
    seeded.seconds = {"import_csv": imported, "admin, token, job, start_run": services,
                      **seeded.seconds}  # fmt: skip
    say(
        "  seeded in "
        + ", ".join(f"{name} {s:.1f}s" for name, s in seeded.seconds.items())
        + f" ({sum(seeded.seconds.values()):.1f}s)"
    )
    return bench_db.uri, dsn, seeded, devices


def run(args: argparse.Namespace, tmp: Path, workers: Workers) -> list[dict[str, Any]]:
    say(
        f"Rookery pages benchmark: {args.devices:,} devices and a backup run of as many "
        f"results, {args.requests} requests per page"
    )
    db_uri, dsn, seeded, devices = seed(args, tmp)
    web = start_web(workers, db_uri, tmp)
    say(f"  rookery web (werkzeug, threaded) on port {web.port}; admin logged in, API token")
    clients = {
        "page": Client(web.port, {"Cookie": web.cookie}),
        "api": Client(web.port, {"Authorization": f"Bearer {seeded.token}"}),
        "anonymous": Client(web.port, {}),
    }
    for client in clients.values():
        cleanup.append(client.close)
    pg = BackendCpu(dsn)
    cleanup.append(pg.close)
    pages = pages_for(seeded, min(d.name for d in devices), limit=100)
    say("  timing ...")
    clock = time.monotonic()
    measure(pages, clients, web, pg, args)
    say(
        f"  timed in {time.monotonic() - clock:.0f}s; the web process's peak RSS "
        f"{web.peak_rss_mib():,.0f} MiB (VmHWM)"
    )
    workers.stop(web.worker)
    return report(args, seeded, pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--devices", type=int, default=DEFAULT_DEVICES, help="devices, and results of the run"
    )
    parser.add_argument(
        "--requests", type=int, default=DEFAULT_REQUESTS, help="timed requests per page"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        help=f"seconds of timed requests a page gets at most (at least {MIN_SAMPLES} requests)",
    )
    args = parser.parse_args(argv)
    if args.devices < SITE_SIZE:
        parser.error(f"--devices: at least {SITE_SIZE}")
    if args.requests < 1:
        parser.error("--requests: at least 1")
    if args.budget <= 0:
        parser.error("--budget: more than 0")
    return run_guarded("rookery-bench-pages-", lambda tmp, s: run(args, tmp, s[0]), [Workers()])


if __name__ == "__main__":
    sys.exit(main())
