"""Fault drills: Rookery as real processes, then something goes wrong on purpose.

Each drill gets a ``Drill`` (the ``drill`` fixture): an instance folder of its own
(so its own embedded PostgreSQL, config store and keys), a web server on a free port
of 127.0.0.1, workers started by name, an admin API token, and emulated SSH devices
(FakeNOS, 127.0.0.1 only) when it asks for them. Nothing is shared between drills, so
they may run in parallel with each other.

The settings below keep every bound short: a worker without heartbeat for
``STALLED_SECONDS`` counts as dead, and the reconciler runs every ~15 s, so a repair
is due within ``REPAIR_BOUND`` seconds. Processes are started and stopped with the
acceptance helpers (``tests/acceptance/conftest.py``); every wait is bounded and every
failure message ends with the tails of the processes' logs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.config_store import device_file_name
from app.demo_lab import DeviceLab, LabDevice
from tests.acceptance.conftest import (
    COMMAND_TIMEOUT,
    HEALTH_TIMEOUT,
    Launcher,
    RookeryProcess,
    free_port,
    pg_ctl,
    postgres_processes,
    wait_until,
)

#: seconds without heartbeat before a worker counts as dead (ROOKERY_WORKER_STALLED_SECONDS)
STALLED_SECONDS = 8
#: how often the reconciler runs (the engine's period, not a setting)
RECONCILER_PERIOD = 15
#: a divergence (dead worker, failed queue job) must be repaired within this many seconds
REPAIR_BOUND = STALLED_SECONDS + 2 * RECONCILER_PERIOD + 15

#: what every drill process gets (a worker may override any of it)
DRILL_SETTINGS: dict[str, str] = {
    "ROOKERY_WORKER_STALLED_SECONDS": str(STALLED_SECONDS),
    "ROOKERY_CONFIG_PUSH_RETRY_SECONDS": "5",
    "ROOKERY_WORKER_GRACE_SECONDS": "5",
    "ROOKERY_WORKER_CONCURRENCY": "8",
    "ROOKERY_RETRY_DELAY_SECONDS": "1",
    "ROOKERY_RETRY_MAX_DELAY_SECONDS": "2",
    "ROOKERY_SSH_CONNECT_TIMEOUT": "5",
    "ROOKERY_CONNECT_RETRIES": "0",
    "ROOKERY_LOG_LEVEL": "INFO",
}

WORKER_READY = r"Worker starting: concurrency \d+"
FINAL_EVENTS = ("job.completed", "job.failed", "job.cancelled", "job.timeout")

SETUP = """
import json
from app import create_app
from app.services import tokens, users
app = create_app()
with app.app_context():
    admin = users.create_user("admin", "drill-admin-password", "admin", actor="drill")
    _, token = tokens.create_token(admin, "drill", actor="drill")
print(json.dumps({"token": token, "dsn": app.config["ROOKERY_PG_DSN"]}))
"""


# --------------------------------------------------------------------------- HTTP


@dataclass
class Answer:
    """One HTTP answer: status, content type and body (JSON parsed when it is JSON)."""

    status: int
    content_type: str
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def is_json(self) -> bool:
        if not self.content_type.startswith("application/json"):
            return False
        try:
            json.loads(self.text)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return f"HTTP {self.status} ({self.content_type}): {self.text[:1500]}"


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    timeout: float = 30.0,
) -> Answer:
    """One request to 127.0.0.1; 4xx/5xx are answers, not exceptions."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Answer(
                response.status,
                response.headers.get("Content-Type", ""),
                response.read().decode("utf-8", "replace"),
            )
    except urllib.error.HTTPError as exc:
        try:
            return Answer(
                exc.code,
                exc.headers.get("Content-Type", ""),
                exc.read().decode("utf-8", "replace"),
            )
        finally:
            exc.close()


@dataclass
class Delivery:
    event: str
    headers: dict[str, str]
    body: Any


@dataclass
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every POST (and answers 204)."""

    deliveries: list[Delivery] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                receiver.deliveries.append(
                    Delivery(self.headers.get("X-Rookery-Event", ""), dict(self.headers), body)
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def of(self, event: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.event == event]


# -------------------------------------------------------------------------- drill


class Drill:
    """One instance of Rookery as processes, driven through its API."""

    def __init__(self, launcher: Launcher, root: Path) -> None:
        self.launcher = launcher
        self.root = root
        self.instance = launcher.instance("instance")
        self.pgdata = self.instance / "pgdata"
        self.settings: dict[str, str] = dict(DRILL_SETTINGS)
        self.web: RookeryProcess | None = None
        self.workers: dict[str, RookeryProcess] = {}
        self.token = ""
        self.dsn = ""
        self.base = ""
        self.labs: list[DeviceLab] = []
        self.receivers: list[WebhookReceiver] = []

    # -- processes ---------------------------------------------------------------------

    def env(self, **overrides: str | None) -> dict[str, str]:
        return self.launcher.env(self.instance, **{**self.settings, **overrides})

    def setup(self, **settings: str) -> None:
        """Migrate the instance and make the admin's API token (no process left running)."""
        self.settings.update(settings)
        upgraded = self.launcher.run(["db", "upgrade"], self.env())
        assert upgraded.returncode == 0, upgraded.describe()
        made = self.launcher.python(SETUP, env=self.env())
        assert made.returncode == 0, made.describe()
        data = json.loads(made.stdout.strip().splitlines()[-1])
        self.token, self.dsn = data["token"], data["dsn"]
        # The last process's embedded PostgreSQL stops as it exits: let it finish stopping
        # before the web server starts it again.
        wait_until(
            lambda: not postgres_processes(self.pgdata),
            30,
            f"the embedded PostgreSQL of the set-up to stop ({self.pgdata})",
        )

    def start_web(self, **overrides: str | None) -> RookeryProcess:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.web = self.launcher.start(
            ["web", "--host", "127.0.0.1", "--port", str(port)], self.env(**overrides), "web"
        )
        self.wait_health(lambda report: True, HEALTH_TIMEOUT, "the web server to answer /health")
        return self.web

    def start_worker(self, name: str, *, wait: bool = True, **overrides: str | None):
        worker = self.launcher.start(
            ["worker", "--name", name], self.env(**overrides), f"worker-{name}"
        )
        self.workers[name] = worker
        if wait:
            worker.wait_for_output(WORKER_READY, COMMAND_TIMEOUT, stream="stderr")
        return worker

    def start(self, workers: tuple[str, ...] = ("A", "B"), **settings: str) -> None:
        """Set up, start the web server and the named workers; wait until they are alive."""
        self.setup(**settings)
        self.start_web()
        for name in workers:
            self.start_worker(name, wait=False)
        for name in workers:
            self.workers[name].wait_for_output(WORKER_READY, COMMAND_TIMEOUT, stream="stderr")
        self.wait_workers_alive(len(workers))

    def wait_workers_alive(self, count: int, timeout: float = 30) -> None:
        self.wait_health(
            lambda report: ((report.get("workers") or {}).get("alive") or 0) >= count,
            timeout,
            f"{count} live worker(s) in /health",
        )

    def kill(self, name: str, signum: int = signal.SIGKILL) -> None:
        """Signal one worker process (SIGKILL: no goodbye, no last heartbeat)."""
        self.workers[name].signal(signum)

    def restart_postgres(self) -> None:
        log = str(self.pgdata / "log")
        pg_ctl(self.pgdata, "-m", "fast", "-w", "-t", "30", "-l", log, "restart")

    def describe(self, tail: int = 30) -> str:
        """The tails of the web's and workers' logs, access lines left out (for messages)."""
        parts = []
        for proc in self.launcher.processes:
            if not proc.name.startswith(("web", "worker")):
                continue
            lines = [
                line
                for line in proc.output().splitlines()
                if " werkzeug: " not in line and "procrastinate.periodic: " not in line
            ]
            shown = "\n".join(lines[-tail:])
            parts.append(f"--- {proc.name} (pid {proc.pid}, exit {proc.returncode}):\n{shown}")
        return "\n".join(parts)

    def close(self) -> None:
        for lab in self.labs:
            lab.stop()
        for receiver in self.receivers:
            receiver.stop()

    # -- API ---------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Answer:
        return http(method, f"{self.base}/api/v1{path}", body, token=self.token, timeout=timeout)

    def ok(self, method: str, path: str, body: Any = None, status: int | None = None) -> Any:
        """Call the API and insist on a 2xx (or ``status``); return the JSON."""
        answer = self.api(method, path, body)
        expected = status if status is not None else answer.status
        assert 200 <= answer.status < 300 and answer.status == expected, (
            f"{method} {path} {json.dumps(body)[:500] if body else ''} -> {answer}"
        )
        return answer.json if answer.text else None

    def health(self) -> tuple[int, dict[str, Any]]:
        answer = http("GET", f"{self.base}/health", timeout=10)
        try:
            return answer.status, answer.json
        except ValueError:
            return answer.status, {"unparsed": answer.text[:500]}

    def wait_health(
        self, ready: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        last: list[Any] = [None]

        def check() -> dict[str, Any] | None:
            if self.web is not None and self.web.returncode is not None:
                pytest.fail(f"the web server exited:\n{self.web.describe()}")
            try:
                status, report = self.health()
            except (urllib.error.URLError, OSError) as exc:
                last[0] = f"{type(exc).__name__}: {exc}"
                return None
            last[0] = (status, report)
            return report if status == 200 and ready(report) else None

        try:
            return wait_until(check, timeout, f"waiting for {what}", interval=0.25)
        except pytest.fail.Exception:
            pytest.fail(
                f"no {what} within {timeout:g}s; last /health: {last[0]}\n{self.describe()}"
            )

    def create_job(self, name: str, job_type: str, **fields: Any) -> dict[str, Any]:
        return self.ok("POST", "/jobs", {"name": name, "job_type": job_type, **fields}, 201)

    def start_run(self, job_id: int, **body: Any) -> dict[str, Any]:
        return self.ok("POST", f"/jobs/{job_id}/runs", body, 201)

    def run(self, run_id: int) -> dict[str, Any]:
        return self.ok("GET", f"/runs/{run_id}")

    def events(self, run_id: int, *types: str) -> list[dict[str, Any]]:
        query = "".join(f"&type={urllib.parse.quote(t)}" for t in types)
        found: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.ok("GET", f"/runs/{run_id}/events?limit=1000{query}{cursor}")
            found.extend(page["items"])
            if page["next"] is None:
                return found
            cursor = f"&cursor={page['next']}"

    def results(self, run_id: int) -> list[dict[str, Any]]:
        """The run's device results, by device name (without outputs: ``result``)."""
        found: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self.ok("GET", f"/runs/{run_id}/results?limit=1000{cursor}")
            found.extend(page["items"])
            if page["next"] is None:
                return found
            cursor = f"&cursor={urllib.parse.quote(page['next'])}"

    def result(self, run_id: int, device: str) -> dict[str, Any]:
        """One device's result in the run, with its output and data."""
        return self.ok("GET", f"/runs/{run_id}/results/{urllib.parse.quote(device)}")

    def started_count(self, run_id: int) -> int:
        return len(self.events(run_id, "job.started"))

    def runs(self) -> list[dict[str, Any]]:
        """Every run, newest first."""
        found: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            page = self.ok("GET", "/runs?limit=500" + (f"&before={before}" if before else ""))
            found.extend(page["items"])
            before = page["next"]
            if not before:
                return found

    def wait_run(
        self,
        run_id: int,
        ready: Callable[[dict[str, Any]], bool],
        bound: float,
        what: str,
    ) -> dict[str, Any]:
        """Poll the run until ``ready(run)``; fail after ``bound`` s with the run and logs."""
        last: list[Any] = [None]
        deadline = time.monotonic() + bound
        while True:
            try:
                answer = self.api("GET", f"/runs/{run_id}", timeout=10)
            except (urllib.error.URLError, OSError) as exc:
                last[0] = f"{type(exc).__name__}: {exc}"
            else:
                if answer.status == 200:
                    last[0] = answer.json
                    if ready(last[0]):
                        return last[0]
                else:
                    last[0] = str(answer)
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"run #{run_id}: {what} not within {bound:g}s; last seen: "
                    f"{json.dumps(_brief(last[0]))}\n{self.describe()}"
                )
            time.sleep(0.25)

    def wait_final(self, run_id: int, bound: float) -> dict[str, Any]:
        return self.wait_run(run_id, lambda r: r["final"], bound, "a final status")

    def wait_status(self, run_id: int, status: str, bound: float) -> dict[str, Any]:
        """Wait for the run to end; fail if it ends (or stays) in another status."""
        run = self.wait_final(run_id, bound)
        assert run["status"] == status, (
            f"run #{run_id} ended {run['status']}, expected {status}: "
            f"{json.dumps(_brief(run))}\n{self.describe()}"
        )
        return run

    def wait_running(self, run_id: int, bound: float = 30, worker: str | None = None):
        def ready(run: dict[str, Any]) -> bool:
            if run["final"]:
                pytest.fail(f"run #{run_id} ended before it was seen running: {_brief(run)}")
            return run["status"] == "RUNNING" and (worker is None or run["worker"] == worker)

        where = f" on worker {worker}" if worker else ""
        return self.wait_run(run_id, ready, bound, f"RUNNING{where}")

    def assert_one_execution_per_attempt(self, run_id: int) -> dict[str, Any]:
        """``job.started`` events == the run's attempt (0 for a run cancelled before it
        ever started); at most one ending event per attempt."""
        run = self.run(run_id)
        started = self.started_count(run_id)
        attempts = run["attempt"] if run.get("started_at") else 0
        assert started == attempts, (
            f"run #{run_id} ({run['status']}): {started} job.started event(s) for "
            f"{run['attempt']} attempt(s): executed more (or less) than once per attempt; "
            f"events: {self.event_trail(run_id)}"
        )
        endings = len(self.events(run_id, *FINAL_EVENTS))
        assert endings <= run["attempt"] + 1, (  # +1: a cancel request is a job.cancelled too
            f"run #{run_id}: {endings} ending events for {run['attempt']} attempt(s): "
            f"{self.event_trail(run_id)}"
        )
        return run

    def event_trail(self, run_id: int) -> list[str]:
        return [
            f"{e['type']}:{e['status']}:{(e['message'] or '')[:80]}" for e in self.events(run_id)
        ]

    def assert_no_run_left(self, bound: float = 15) -> None:
        """No run of this instance is left in a non-final status (after ``bound`` s)."""
        deadline = time.monotonic() + bound
        while True:
            left = [r for r in self.runs() if not r["final"]]
            if not left:
                return
            if time.monotonic() >= deadline:
                shown = [f"#{r['id']} {r['status']} (attempt {r['attempt']})" for r in left]
                pytest.fail(
                    f"{len(left)} run(s) left in a non-final status: {shown}\n{self.describe()}"
                )
            time.sleep(0.5)

    # -- devices -----------------------------------------------------------------------

    def lab(self, devices: list[LabDevice]) -> DeviceLab:
        """Start emulated devices on 127.0.0.1 (stopped after the drill)."""
        lab = DeviceLab(devices)
        self.labs.append(lab)
        return lab.start()

    def add_devices(self, lab: DeviceLab, tag: str = "drill") -> dict[str, int]:
        """Each lab device as inventory (tag ``tag``) with a credential of its own."""
        ids: dict[str, int] = {}
        for device in lab.devices:
            created = self.ok(
                "POST",
                "/devices",
                {
                    "name": device.name,
                    "host": device.host,
                    "port": device.port,
                    "platform": device.platform,
                    "tags": [tag, f"dev-{device.name}"],
                },
                201,
            )
            ids[device.name] = created["id"]
            credential: dict[str, Any] = {
                "name": f"cred-{device.name}",
                "username": device.username,
                "password": device.password,
                "priority": 10,
                "tags": [f"dev-{device.name}"],
            }
            if device.enable_secret:
                credential["secret"] = device.enable_secret
            self.ok("POST", "/credentials", credential, 201)
        return ids

    def receiver(self) -> WebhookReceiver:
        receiver = WebhookReceiver().start()
        self.receivers.append(receiver)
        return receiver

    # -- config store ------------------------------------------------------------------

    @property
    def config_repo(self) -> Path:
        return self.instance / "configs"

    def git(self, *args: str, repo: Path | None = None) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo or self.config_repo), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
        return done.stdout

    def git_head(self, repo: Path | None = None) -> str | None:
        path = repo or self.config_repo
        if not (path / "HEAD").exists() and not (path / ".git").exists():
            return None
        done = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--verify", "-q", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout.strip() or None

    def files_at_head(self) -> set[str]:
        if self.git_head() is None:
            return set()
        return set(self.git("ls-tree", "--name-only", "HEAD").split())

    def device_files(self, names: list[str]) -> set[str]:
        return {device_file_name(name) for name in names}

    # -- database ----------------------------------------------------------------------

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()


def _brief(run: Any) -> Any:
    """A run without its bulky parts (for messages)."""
    if not isinstance(run, dict):
        return run
    keep = ("id", "status", "attempt", "max_attempts", "worker", "error", "message", "result")
    out = {k: run.get(k) for k in keep}
    out["progress"] = run.get("progress")
    out["cancel_requested"] = run.get("cancel_requested")
    if run.get("results"):
        out["results"] = [(r["device"], r["status"], r["message"][:60]) for r in run["results"]]
    return out


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Drill]:
    """A Rookery instance of this drill's own; every process stopped afterwards."""
    launcher = Launcher(tmp_path)
    drill = Drill(launcher, tmp_path)
    try:
        yield drill
    finally:
        drill.close()
        launcher.close()
