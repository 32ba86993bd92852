"""Drills: a worker dies (SIGKILL) or stops (SIGTERM) with a run in its hands.

Issue items 1 (cancel + dead worker) and 4 (graceful shutdown longer than the stall
window), and a worker killed in the middle of a backup.
"""

from __future__ import annotations

import signal
import time

import pytest

from app.demo_lab import default_fleet
from tests.drills.conftest import REPAIR_BOUND, Drill

pytestmark = [pytest.mark.drills, pytest.mark.acceptance]


@pytest.mark.parametrize("kill", ["just_before_cancel", "just_after_cancel"])
def test_cancel_and_sigkill_of_the_worker_ends_cancelled(drill: Drill, kill: str) -> None:
    """Cancel a running run, SIGKILL its worker just before or after: CANCELLED in bound."""
    drill.start(workers=("A",))
    job = drill.create_job(
        "long-noop", "noop", params={"seconds": 60}, max_retries=2, allow_overlap=False
    )
    run = drill.start_run(job["id"])
    drill.wait_running(run["id"], worker="A")
    drill.start_worker("B")  # alive before the fault, so nothing waits for a worker

    if kill == "just_before_cancel":
        drill.kill("A", signal.SIGKILL)
        drill.workers["A"].wait(5)
    cancelled = drill.api("POST", f"/runs/{run['id']}/cancel")
    if kill == "just_after_cancel":
        drill.kill("A", signal.SIGKILL)
    killed_at = time.monotonic()
    assert cancelled.status == 200, f"cancel of a running run: {cancelled}"

    ended = drill.wait_final(run["id"], REPAIR_BOUND)
    assert ended["status"] == "CANCELLED", (
        f"run #{run['id']} cancelled, then its worker killed, ended {ended['status']} "
        f"after {time.monotonic() - killed_at:.0f}s (error: {ended['error']!r})\n{drill.describe()}"
    )
    drill.assert_one_execution_per_attempt(run["id"])

    again = drill.api("POST", f"/runs/{run['id']}/cancel")
    assert again.status == 409 and again.is_json, f"a second cancel must be a 409 JSON: {again}"
    assert {"error", "message"} <= set(again.json), f"a 409 without its message: {again}"

    # The no-overlap job is free again: a relaunch is accepted and runs to its end on B.
    drill.ok("PATCH", f"/jobs/{job['id']}", {"params": {"seconds": 1}})
    relaunched = drill.api("POST", f"/runs/{run['id']}/relaunch", {})
    assert relaunched.status == 201, f"relaunch of the cancelled run: {relaunched}"
    new = drill.wait_status(relaunched.json["id"], "COMPLETED_SUCCESS", 60)
    assert new["worker"] == "B", new
    drill.assert_one_execution_per_attempt(new["id"])
    drill.assert_no_run_left()


def test_graceful_shutdown_longer_than_the_stall_window_runs_once(drill: Drill) -> None:
    """SIGTERM with a 120 s grace and an 8 s stall window: the run ends once, on A."""
    drill.start(workers=("A",), ROOKERY_WORKER_GRACE_SECONDS="120")
    job = drill.create_job("slow-noop", "noop", params={"seconds": 25}, max_retries=2)
    run = drill.start_run(job["id"])
    drill.wait_running(run["id"], worker="A")
    started = time.monotonic()
    drill.start_worker("B")
    drill.wait_workers_alive(2)
    # A's grace outlasts the stall window by far: its heartbeat must go on meanwhile.
    drill.workers["A"].signal(signal.SIGTERM)
    assert time.monotonic() - started < 20, "the SIGTERM came too late to test anything"

    ended = drill.wait_final(run["id"], 25 + 30)
    assert ended["status"] == "COMPLETED_SUCCESS", (
        f"run #{run['id']} ended {ended['status']} (error {ended['error']!r})\n{drill.describe()}"
    )
    assert ended["attempt"] == 1 and ended["worker"] == "A", (
        f"run #{run['id']} was taken from the stopping worker A: attempt {ended['attempt']}, "
        f"worker {ended['worker']}; events: {drill.event_trail(run['id'])}"
    )
    assert not ended["error"], f"a successful run with an error: {ended['error']!r}"
    started_events = drill.started_count(run["id"])
    assert started_events == 1, (
        f"{started_events} job.started events: run #{run['id']} executed more than once; "
        f"events: {drill.event_trail(run['id'])}"
    )
    completed = drill.events(run["id"], "job.completed")
    assert len(completed) == 1, (
        f"{len(completed)} job.completed events: {drill.event_trail(run['id'])}"
    )

    code = drill.workers["A"].wait(30)
    assert code == 0, f"worker A did not exit 0 after its run:\n{drill.workers['A'].describe()}"
    drill.assert_no_run_left()


def test_sigkill_mid_backup_finishes_on_the_other_worker(drill: Drill) -> None:
    """A worker killed in the middle of a backup: a new attempt on B backs up every device."""
    drill.start(workers=("A",), ROOKERY_SSH_READ_TIMEOUT="90")
    lab = drill.lab(default_fleet(6))
    names = [d.name for d in lab.devices]
    slow = names[3:]
    for name in slow:
        lab.set_hanging(name)
    drill.add_devices(lab)
    job = drill.create_job(
        "backup",
        "config_backup",
        targets={"tags": ["drill"]},
        max_retries=2,
        retry_backoff_seconds=1,
        timeout_seconds=240,
    )
    run = drill.start_run(job["id"])
    drill.wait_running(run["id"], worker="A")
    drill.start_worker("B")
    # Three devices done, three hanging: kill A in the middle of the backup.
    drill.wait_run(run["id"], lambda r: r["progress"]["done"] >= 3, 60, "3 devices done")
    drill.kill("A", signal.SIGKILL)
    for name in slow:
        lab.set_hanging(name, False)

    ended = drill.wait_final(run["id"], REPAIR_BOUND + 30)
    assert ended["status"] == "COMPLETED_SUCCESS", (
        f"run #{run['id']} ended {ended['status']} (error {ended['error']!r})\n{drill.describe()}"
    )
    assert ended["attempt"] >= 2 and ended["worker"] == "B", ended
    drill.assert_one_execution_per_attempt(run["id"])
    assert (ended["result"] or {}).get("commit"), f"no commit recorded: {ended['result']}"
    missing = drill.device_files(names) - drill.files_at_head()
    assert not missing, f"git HEAD lacks configs of devices that finished: {sorted(missing)}"
    drill.assert_no_run_left()
