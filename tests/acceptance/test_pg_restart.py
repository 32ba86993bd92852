"""`rookery run` rides out a restart of its embedded PostgreSQL."""

from __future__ import annotations

import signal
import time

import pytest

from tests.acceptance.conftest import (
    COMMAND_TIMEOUT,
    HEALTH_TIMEOUT,
    Launcher,
    assert_logs_in,
    free_port,
    health_ok,
    pg_ctl,
    postgres_processes,
    wait_http,
    wait_until,
)

pytestmark = pytest.mark.acceptance

PASSWORD = "acceptance-restart-pw"


def test_web_and_worker_reconnect_after_postgresql_restart(rookery: Launcher) -> None:
    instance = rookery.instance()
    pgdata = instance / "pgdata"
    env = rookery.env(instance, ROOKERY_ADMIN_PASSWORD=PASSWORD)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = rookery.start(["run", "--port", str(port)], env)
    run.wait_for_output(r"Rookery is running at", COMMAND_TIMEOUT)
    wait_http(f"{base}/health", HEALTH_TIMEOUT, ready=health_ok, proc=run)
    assert_logs_in(base, "admin", PASSWORD)

    before = [p.pid for p in postgres_processes(pgdata)]
    assert len(before) == 1, f"expected one postmaster on {pgdata}, found {before}"
    pg_ctl(pgdata, "-m", "fast", "-w", "-t", "30", "-l", str(pgdata / "log"), "restart")
    after = [p.pid for p in postgres_processes(pgdata)]
    assert len(after) == 1 and after != before, f"postmaster before {before}, after {after}"

    deadline = time.monotonic() + 60
    wait_http(f"{base}/health", 60, ready=health_ok, proc=run)
    remaining = max(5.0, deadline - time.monotonic())
    ping = rookery.run(["queue", "ping", "--timeout", "20"], env, timeout=remaining + 30)
    assert ping.returncode == 0, f"{ping.describe()}\n{run.describe()}"
    assert "A worker answered" in ping.stdout
    assert_logs_in(base, "admin", PASSWORD)
    assert time.monotonic() < deadline + 30, "recovery took far longer than 60 s"
    assert run.returncode is None, run.describe()

    run.signal(signal.SIGINT)
    assert run.wait(60) == 0, run.describe()


def test_embedded_postgresql_stops_with_rookery_after_a_restart(rookery: Launcher) -> None:
    instance = rookery.instance()
    pgdata = instance / "pgdata"
    env = rookery.env(instance)
    assert rookery.run(["db", "upgrade"], env).returncode == 0
    worker = rookery.start(["worker"], env)
    worker.wait_for_output(r"Worker starting", COMMAND_TIMEOUT, stream="stderr")
    pg_ctl(pgdata, "-m", "fast", "-w", "-t", "30", "-l", str(pgdata / "log"), "restart")
    ping = rookery.run(["queue", "ping", "--timeout", "30"], env, timeout=60)
    assert ping.returncode == 0, f"{ping.describe()}\n{worker.describe()}"

    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.describe()
    wait_until(
        lambda: not postgres_processes(pgdata),
        3,
        f"embedded PostgreSQL still running on {pgdata} after the last Rookery process exited",
    )
