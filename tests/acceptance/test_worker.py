"""`rookery worker` and `rookery queue ping` as processes on a migrated instance.

What procrastinate 3.10 does with a run still going when the grace period ends
(worker.py ``_shutdown`` -> ``_abort_running_jobs``): it marks the run to abort with
reason SHUTDOWN; a sync task sees ``context.should_abort()`` and raises JobAborted;
``_process_job`` then asks the task's retry strategy for a retry (abort at shutdown
is retryable) -- ``rookery.ping`` has none, so no retry is scheduled and the job ends
``aborted`` (not back to ``todo``). Tasks with a retry strategy would go back to
``todo`` instead.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import (
    COMMAND_TIMEOUT,
    Launcher,
    RookeryProcess,
    defer_ping,
    error_lines,
    final_status,
    stop_process,
    wait_doing,
)

pytestmark = pytest.mark.acceptance

WORKER_READY = r"Worker starting: concurrency \d+"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One instance migrated with `rookery db upgrade`, shared by this module's tests."""
    launcher = Launcher(tmp_path_factory.mktemp("migrated"))
    try:
        instance = launcher.instance()
        result = launcher.run(["db", "upgrade"], launcher.env(instance))
        assert result.returncode == 0, result.describe()
        yield instance
    finally:
        launcher.close()


def start_worker(rookery: Launcher, env: dict[str, str]) -> RookeryProcess:
    worker = rookery.start(["worker"], env)
    worker.wait_for_output(WORKER_READY, COMMAND_TIMEOUT, stream="stderr")
    return worker


def test_sigterm_lets_the_run_in_flight_finish(rookery: Launcher, migrated: Path) -> None:
    env = rookery.env(migrated, ROOKERY_WORKER_GRACE_SECONDS="20")
    worker = start_worker(rookery, env)
    assert "grace period 20s" in worker.stderr()
    job_id, dsn = defer_ping(rookery, env, delay=3)
    wait_doing(worker, dsn, job_id)

    stopped_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.wait(30)
    assert code == 0, f"worker did not exit 0 within 30 s of SIGTERM:\n{worker.describe()}"
    assert time.monotonic() - stopped_at >= 1.0, "the worker did not wait for its run"
    assert final_status(rookery, env, job_id) == "succeeded", worker.describe()
    assert "Traceback" not in worker.output()


def test_grace_period_over_aborts_the_run(rookery: Launcher, migrated: Path) -> None:
    env = rookery.env(migrated, ROOKERY_WORKER_GRACE_SECONDS="1")
    worker = start_worker(rookery, env)
    job_id, dsn = defer_ping(rookery, env, delay=30)
    wait_doing(worker, dsn, job_id)

    stopped_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.wait(10)
    assert code == 0, f"worker did not exit 0 within 10 s of SIGTERM:\n{worker.describe()}"
    assert time.monotonic() - stopped_at < 10
    # rookery.ping has no retry strategy: aborted at shutdown, it is not retried.
    assert final_status(rookery, env, job_id) == "aborted", worker.describe()
    # (procrastinate logs the aborted job's JobAborted with its traceback: not checked here.)


def test_queue_ping_needs_a_worker(rookery: Launcher, migrated: Path) -> None:
    env = rookery.env(migrated)
    worker = start_worker(rookery, env)
    answered = rookery.run(["queue", "ping", "--timeout", "30"], env, timeout=60)
    assert answered.returncode == 0, answered.describe()
    assert "A worker answered" in answered.stdout, answered.describe()
    assert stop_process(worker, signal.SIGTERM, 30) == 0, worker.describe()

    unanswered = rookery.run(["queue", "ping", "--timeout", "2"], env, timeout=60)
    assert unanswered.returncode == 1, unanswered.describe()
    errors = error_lines(unanswered.stderr)
    assert len(errors) == 1, unanswered.describe()
    assert "No worker answered" in errors[0]
    assert "Traceback" not in unanswered.output


def test_queue_ping_before_migrations_is_one_clear_error(rookery: Launcher) -> None:
    env = rookery.env(rookery.instance())
    result = rookery.run(["queue", "ping", "--timeout", "2"], env, timeout=60)
    assert result.returncode != 0, result.describe()
    assert "Traceback" not in result.output, result.describe()
    assert len(error_lines(result.stderr)) == 1, result.describe()


def test_worker_on_unmigrated_database_refuses_to_start(rookery: Launcher) -> None:
    env = rookery.env(rookery.instance())
    result = rookery.run(["worker"], env, timeout=60)
    assert result.returncode != 0, result.describe()
    assert "Traceback" not in result.output, result.describe()
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.describe()
    assert "rookery db upgrade" in errors[0]


def test_procrastinate_cli_worker_gets_rookerys_setup(rookery: Launcher, migrated: Path) -> None:
    """`procrastinate --app=app.engine.queue.queue_app worker` sizes its pool, runs in the app."""
    import sys

    env = rookery.env(migrated, ROOKERY_WORKER_CONCURRENCY="3")
    worker = rookery.start(
        [sys.executable, "-m", "procrastinate", "--app=app.engine.queue.queue_app", "worker"],
        env,
        name="procrastinate-worker",
    )
    worker.wait_for_output(r"Worker starting: concurrency 3", COMMAND_TIMEOUT, stream="stderr")
    # The ping writes a log row through the Flask app: it needs the app context.
    answered = rookery.run(["queue", "ping", "--timeout", "30"], env, timeout=60)
    assert answered.returncode == 0, f"{answered.describe()}\n{worker.describe()}"
    assert stop_process(worker, signal.SIGTERM, 30) == 0, worker.describe()
