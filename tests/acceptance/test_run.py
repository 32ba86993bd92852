"""`rookery run` as a person runs it: first start, log in, Ctrl-C, start again; errors."""

from __future__ import annotations

import os
import re
import signal
import socket
import time

import psutil
import pytest

from tests.acceptance.conftest import (
    COMMAND_TIMEOUT,
    HEALTH_TIMEOUT,
    Launcher,
    assert_logs_in,
    defer_ping,
    error_lines,
    final_status,
    free_port,
    health_ok,
    postgres_processes,
    wait_doing,
    wait_http,
    wait_until,
)

pytestmark = pytest.mark.acceptance

ADMIN_PASSWORD_LINE = re.compile(r"Created the first user 'admin' with password: (\S+)")
RUNNING = r"Rookery is running at http://127\.0\.0\.1:\d+/"


def is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_first_run_prints_password_serves_and_survives_a_restart(rookery: Launcher) -> None:
    instance = rookery.instance()
    pgdata = instance / "pgdata"
    env = rookery.env(instance, ROOKERY_ADMIN_PASSWORD=None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    run = rookery.start(["run", "--port", str(port)], env)
    run.wait_for_output(RUNNING, timeout=COMMAND_TIMEOUT)
    passwords = ADMIN_PASSWORD_LINE.findall(run.stdout())
    assert len(passwords) == 1, f"expected the admin password printed once:\n{run.describe()}"
    password = passwords[0]

    login_page = wait_http(f"{base}/login", HEALTH_TIMEOUT, proc=run)
    assert 'name="csrf_token"' in login_page.body
    assert 'name="username"' in login_page.body
    assert 'name="password"' in login_page.body

    # Within ~20 s of the server announcing itself: schema current, a worker alive.
    health = wait_http(f"{base}/health", 20, ready=health_ok, proc=run).json()
    assert health["status"] == "ok"
    assert health["migrations"]["up_to_date"] is True
    assert health["workers"]["alive"] >= 1

    assert_logs_in(base, "admin", password)

    children = run.descendants()
    assert len(children) >= 2, f"expected web and worker children, got {children}"
    run.signal(signal.SIGINT)
    code = run.wait(60)
    assert code == 0, f"`rookery run` did not exit 0 within 60 s after SIGINT:\n{run.describe()}"
    leftover = [p for p in children if is_alive(p)]
    assert not leftover, f"children still running after SIGINT: {leftover}"
    assert not run.session_processes()
    # pg_ctl stop -w has returned by the time the last holder exits; allow a moment anyway.
    wait_until(
        lambda: not postgres_processes(pgdata),
        10,
        f"embedded PostgreSQL still running on {pgdata}: {postgres_processes(pgdata)}",
    )
    assert ADMIN_PASSWORD_LINE.findall(run.stdout()) == [password]
    assert "Traceback" not in run.output()

    # Second start on the same instance: no new admin, the first password still works.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    again = rookery.start(["run", "--port", str(port)], env)
    again.wait_for_output(RUNNING, timeout=COMMAND_TIMEOUT)
    assert "Created the first user" not in again.stdout(), again.describe()
    assert password not in again.output()
    wait_http(f"{base}/health", HEALTH_TIMEOUT, ready=health_ok, proc=again)
    assert_logs_in(base, "admin", password)
    again.signal(signal.SIGTERM)
    assert again.wait(60) == 0, again.describe()


def assert_one_clean_error(output: str, stderr: str, *fragments: str) -> str:
    errors = error_lines(stderr)
    assert len(errors) == 1, f"expected one 'Error:' line on stderr:\n{stderr}"
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    assert "Traceback" not in output, output
    return errors[0]


def test_port_in_use_is_one_clear_error(rookery: Launcher) -> None:
    instance = rookery.instance()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = rookery.start(["run", "--port", str(port)], rookery.env(instance))
        code = proc.wait(COMMAND_TIMEOUT)
        assert code is not None, f"`rookery run` on a taken port did not exit:\n{proc.describe()}"
    assert code != 0, proc.describe()
    assert_one_clean_error(proc.output(), proc.stderr(), str(port))
    assert "Rookery is running" not in proc.stdout()
    # Neither a web nor a worker process was left behind, nor the embedded PostgreSQL.
    assert not proc.session_processes(), proc.session_processes()
    wait_until(
        lambda: not postgres_processes(instance / "pgdata"),
        10,
        "embedded PostgreSQL left running after the port error",
    )


def test_unreachable_database_url_fails_fast(rookery: Launcher) -> None:
    instance = rookery.instance()
    env = rookery.env(instance, DATABASE_URL="postgresql://nobody@127.0.0.1:1/nope")
    started = time.monotonic()
    result = rookery.run(["run", "--port", str(free_port())], env, timeout=60)
    assert result.returncode != 0, result.describe()
    assert time.monotonic() - started < 30, result.describe()
    assert_one_clean_error(result.output, result.stderr, "PostgreSQL", "127.0.0.1:1")
    assert "Rookery is running" not in result.stdout


def test_non_postgresql_database_url_is_refused(rookery: Launcher) -> None:
    env = rookery.env(rookery.instance(), DATABASE_URL="mysql://x@y/z")
    result = rookery.run(["db", "upgrade"], env, timeout=60)
    assert result.returncode != 0, result.describe()
    assert_one_clean_error(result.output, result.stderr, "PostgreSQL")


def test_unusable_instance_folder_is_one_clear_error(rookery: Launcher) -> None:
    env = rookery.env(rookery.instance())
    env["ROOKERY_INSTANCE"] = "/proc/rookery-nope"
    result = rookery.run(["run", "--port", str(free_port())], env, timeout=60)
    assert result.returncode != 0, result.describe()
    assert_one_clean_error(result.output, result.stderr, "/proc/rookery-nope")


def test_ctrl_c_lets_the_run_in_flight_finish(rookery: Launcher) -> None:
    instance = rookery.instance()
    env = rookery.env(
        instance, ROOKERY_ADMIN_PASSWORD="acceptance-ctrl-c", ROOKERY_WORKER_GRACE_SECONDS="20"
    )
    port = free_port()
    run = rookery.start(["run", "--port", str(port)], env)
    run.wait_for_output(RUNNING, COMMAND_TIMEOUT)
    wait_http(f"http://127.0.0.1:{port}/health", HEALTH_TIMEOUT, ready=health_ok, proc=run)
    job_id, dsn = defer_ping(rookery, env, delay=4)
    wait_doing(run, dsn, job_id)

    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    assert run.wait(60) == 0, run.describe()
    assert final_status(rookery, env, job_id) == "succeeded", run.describe()
    assert not postgres_processes(instance / "pgdata"), "embedded PostgreSQL left running"
