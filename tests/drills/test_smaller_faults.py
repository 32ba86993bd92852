"""Drills: the smaller faults of issue item 8.

A list parameter given as one string, a command the device refuses, the log of a
cancel, and housekeeping behind a full queue.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import time

import pytest

from app import demo_lab
from app.demo_lab import LabDevice
from tests.acceptance.conftest import wait_until
from tests.drills.conftest import REPAIR_BOUND, Drill, http

pytestmark = [pytest.mark.drills, pytest.mark.acceptance]

COMMA_COMMAND = "show interfaces | include up, down"


def _ios_device(name: str = "ios-001") -> LabDevice:
    return LabDevice(name=name, platform="cisco_ios", username="netops", password="pw-drill-1")


def test_a_list_parameter_with_a_comma_is_one_command(
    drill: Drill, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`commands: "show interfaces | include up, down"` runs that one command."""
    ios = demo_lab.PLATFORMS["cisco_ios"]
    # The emulated IOS answers the comma command (with its configuration) like any show.
    monkeypatch.setitem(
        demo_lab.PLATFORMS,
        "cisco_ios",
        dataclasses.replace(ios, aliases=(*ios.aliases, COMMA_COMMAND)),
    )
    drill.start(workers=("A", "B"))
    lab = drill.lab([_ios_device()])
    drill.add_devices(lab)
    job = drill.create_job(
        "commands", "run_commands", targets={"tags": ["drill"]}, params={"commands": COMMA_COMMAND}
    )
    saved = drill.ok("GET", f"/jobs/{job['id']}")["params"]["commands"]
    assert saved == [COMMA_COMMAND], f"the list parameter was saved as {saved!r}"
    run = drill.start_run(job["id"])
    ended = drill.wait_status(run["id"], "COMPLETED_SUCCESS", 60)
    assert ended["summary"]["total"] == 1, ended
    result = drill.result(run["id"], drill.results(run["id"])[0]["device"])
    assert result["data"]["commands"] == [COMMA_COMMAND], (
        f"one command was split: {result['data']['commands']!r}"
    )
    assert result["output"].count(f"# {COMMA_COMMAND}") == 1, result["output"]
    drill.assert_one_execution_per_attempt(run["id"])
    drill.assert_no_run_left()


def test_a_command_the_device_refuses_fails_that_device(drill: Drill) -> None:
    """A command answered `% Invalid input detected` fails that device, not the others."""
    drill.start(workers=("A", "B"))
    lab = drill.lab([_ios_device("ios-001"), _ios_device("ios-002")])
    ids = drill.add_devices(lab)
    job = drill.create_job(
        "commands",
        "run_commands",
        targets={"tags": ["drill"]},
        params={"commands": ["show version"]},
        allow_overlap=True,
    )
    good = drill.start_run(job["id"], devices=["ios-001"])
    drill.ok("PATCH", f"/jobs/{job['id']}", {"params": {"commands": ["show no-such-thing"]}})
    bad = drill.start_run(job["id"], devices=["ios-002"])

    ended = drill.wait_final(good["id"], 60)
    assert ended["status"] == "COMPLETED_SUCCESS", ended
    refused = drill.wait_final(bad["id"], 60)
    device = drill.result(bad["id"], "ios-002")
    assert "% Invalid input detected" in (device.get("output") or device.get("message") or ""), (
        f"the device did not answer as expected: {device}"
    )
    assert device.get("status") != "success", (
        f"a device answering '% Invalid input detected' counted as a success: {device}"
    )
    assert refused["status"] == "COMPLETED_FAILURE", (
        f"run #{bad['id']} (its only device failed) ended {refused['status']}"
    )
    assert ids  # both devices were loaded
    for run_id in (good["id"], bad["id"]):
        drill.assert_one_execution_per_attempt(run_id)
    drill.assert_no_run_left()


TRACEBACK_LINE = re.compile(r"Traceback|JobAborted")


def test_a_cancel_writes_no_traceback_to_the_worker_log(drill: Drill) -> None:
    """Cancel a running run: CANCELLED, and no `Traceback`/`JobAborted` line on stderr."""
    drill.start(workers=("A",))
    job = drill.create_job("long-noop", "noop", params={"seconds": 30})
    run = drill.start_run(job["id"])
    drill.wait_running(run["id"], worker="A")
    drill.ok("POST", f"/runs/{run['id']}/cancel")
    drill.wait_status(run["id"], "CANCELLED", 20)
    time.sleep(1)  # procrastinate logs the job's end after the run's status is written
    worker = drill.workers["A"]
    noisy = [line for line in worker.stderr().splitlines() if TRACEBACK_LINE.search(line)]
    assert not noisy, "a cancel wrote a traceback to the worker's log:\n" + "\n".join(noisy[:40])
    assert worker.returncode is None, worker.describe()
    drill.assert_one_execution_per_attempt(run["id"])
    drill.assert_no_run_left()


def test_housekeeping_repairs_a_dead_workers_run_behind_a_full_queue(drill: Drill) -> None:
    """Every slot busy, more runs queued, a worker killed: its runs are repaired in bound."""
    drill.start(workers=("A", "B"), ROOKERY_WORKER_CONCURRENCY="2")
    job = drill.create_job(
        "backlog", "noop", params={"seconds": 120}, max_retries=0, allow_overlap=True
    )
    run_ids = [drill.start_run(job["id"])["id"] for _ in range(7)]

    def on(worker: str) -> list[int]:
        return [
            r["id"]
            for r in drill.runs()
            if r["id"] in run_ids and r["status"] == "RUNNING" and r["worker"] == worker
        ]

    wait_until(lambda: len(on("A")) == 2 and len(on("B")) == 2, 30, "every slot busy")
    victims = on("A")
    drill.kill("A", signal.SIGKILL)
    killed_at = time.monotonic()
    for run_id in victims:
        left = max(5.0, killed_at + REPAIR_BOUND - time.monotonic())
        repaired = drill.wait_final(run_id, left)
        assert repaired["status"].startswith("FAILED_") and repaired["error"], (
            f"run #{run_id} of the killed worker (no retries left) was repaired as "
            f"{repaired['status']} ({repaired['error']!r})"
        )
    metrics = http("GET", f"{drill.base}/metrics")
    assert metrics.status == 200, metrics
    repairs = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.text.splitlines()
        if line.startswith("rookery_reconciler_repairs_total")
    )
    assert repairs >= len(victims), (
        f"/metrics counts {repairs:g} reconciler repairs for {len(victims)} repaired runs"
    )

    for run_id in run_ids:
        if not drill.run(run_id)["final"]:
            drill.api("POST", f"/runs/{run_id}/cancel")
    for run_id in run_ids:
        drill.wait_final(run_id, 30)
        drill.assert_one_execution_per_attempt(run_id)
    drill.assert_no_run_left()
