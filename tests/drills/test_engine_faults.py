"""Drills: a run fails outside any unit (issue item 2); PostgreSQL restarts under load (3)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.drills.conftest import REPAIR_BOUND, Drill

pytestmark = [pytest.mark.drills, pytest.mark.acceptance]

SECRET_JOB = '''
"""A job with a secret parameter (for the drills)."""

JOB_META = {
    "job_type": "drill_secret",
    "label": "Drill: secret parameter",
    "targets": "none",
    "params": [{"name": "token", "type": "secret", "required": True}],
}


def run(device, job_id, config, db):
    return {"success": True, "message": "used the token"}
'''

SECRET = "drill-secret-value-1234"


def test_a_secret_the_worker_cannot_read_fails_the_run(drill: Drill, tmp_path: Path) -> None:
    """Workers with another encryption key than the web: FAILED_* with a reason, in bound."""
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "drill_secret.py").write_text(SECRET_JOB)
    drill.setup(ROOKERY_JOBS_PATH=str(jobs))
    drill.start_web(ROOKERY_ENCRYPTION_KEY=Fernet.generate_key().decode())
    other_key = Fernet.generate_key().decode()
    for name in ("A", "B"):
        drill.start_worker(name, ROOKERY_ENCRYPTION_KEY=other_key)
    drill.wait_workers_alive(2)

    job = drill.create_job("secretive", "drill_secret", params={"token": SECRET}, max_retries=0)
    run = drill.start_run(job["id"])
    started = time.monotonic()
    ended = drill.wait_final(run["id"], REPAIR_BOUND)
    assert ended["status"].startswith("FAILED_"), (
        f"run #{run['id']} whose secret no worker can read ended {ended['status']} "
        f"after {time.monotonic() - started:.0f}s: {ended}\n{drill.describe()}"
    )
    assert (ended["error"] or "").strip(), f"run #{run['id']} failed without a reason: {ended}"
    trail = drill.event_trail(run["id"])
    assert SECRET not in str(ended) and SECRET not in str(trail), "the secret leaked"
    started_events = drill.started_count(run["id"])
    assert started_events <= ended["attempt"], (
        f"{started_events} job.started events for {ended['attempt']} attempt(s): {trail}"
    )
    drill.assert_no_run_left()


def test_postgresql_restart_under_load_loses_no_run(drill: Drill) -> None:
    """30 short runs, two workers, `pg_ctl restart` 3 s in: every run ends, once per attempt."""
    drill.start(workers=("A", "B"))
    job = drill.create_job(
        "short-noop",
        "noop",
        params={"seconds": 2},
        max_retries=3,
        retry_backoff_seconds=1,
        allow_overlap=True,
    )
    first = time.monotonic()
    run_ids = [drill.start_run(job["id"])["id"] for _ in range(30)]
    time.sleep(max(0.0, first + 3 - time.monotonic()))
    drill.restart_postgres()
    restarted = time.monotonic()

    bound = 90.0
    ended = {}
    for run_id in run_ids:
        left = max(5.0, restarted + bound - time.monotonic())
        ended[run_id] = drill.wait_final(run_id, left)
    failed = {
        i: (r["status"], r["error"]) for i, r in ended.items() if r["status"] != "COMPLETED_SUCCESS"
    }
    assert not failed, (
        f"runs interrupted by a PostgreSQL restart (retries left) did not succeed: {failed}"
    )
    for run_id in run_ids:
        drill.assert_one_execution_per_attempt(run_id)
        completed = len(drill.events(run_id, "job.completed"))
        assert completed == 1, f"run #{run_id}: {completed} job.completed events"
    drill.assert_no_run_left()
