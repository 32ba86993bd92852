"""Drills: a change's rollout when its worker stops or dies with a device mid-push.

The devices are the stateful IOS emulator (127.0.0.1); one of them hangs on the
change's line, so its unit is caught between "snapshot recorded" and "pushed". A worker
that stops (SIGTERM, short grace) hands the run back: the next attempt, on another
worker, rolls that device back to its snapshot and leaves the devices that already
ended alone (nothing is pushed twice). A worker killed outright (SIGKILL) leaves a run
with no attempt left: the device stays "pushing", uncertain, and the change is failed.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from app.stateful_lab import StatefulLab, stateful_fleet
from tests.acceptance.conftest import wait_until
from tests.drills.conftest import REPAIR_BOUND, Drill

pytestmark = [pytest.mark.drills, pytest.mark.acceptance]

LINE = "ntp server 192.0.2.77"
HUNG = "ios-003"


@pytest.fixture
def lab() -> Iterator[StatefulLab]:
    with StatefulLab(stateful_fleet(4, enable_secrets=True)) as running:
        yield running


def load(drill: Drill, lab: StatefulLab) -> None:
    for device in lab.devices:
        drill.ok(
            "POST",
            "/devices",
            {
                "name": device.name,
                "host": "127.0.0.1",
                "port": lab.port_of(device.name),
                "platform": device.platform,
                "tags": ["drill", f"dev-{device.name}"],
            },
            201,
        )
        drill.ok(
            "POST",
            "/credentials",
            {
                "name": f"cred-{device.name}",
                "username": device.username,
                "password": device.password,
                "secret": device.enable_secret,
                "priority": 10,
                "tags": [f"dev-{device.name}"],
            },
            201,
        )


def apply_with_one_device_hung(drill: Drill, lab: StatefulLab) -> tuple[int, int]:
    """Every device in the canary; the three others end applied, HUNG stays mid-push."""
    load(drill, lab)
    lab.hang(HUNG, math.inf, pattern=r"^ntp server")
    change = drill.ok(
        "POST",
        "/changes",
        {
            "name": "drill ntp",
            "targets": {"tags": ["drill"]},
            "template": LINE + "\n",
            "canary": 4,
            "max_failed": 4,
        },
        201,
    )
    drill.ok("POST", f"/changes/{change['id']}/submit", {})
    drill.ok("POST", f"/changes/{change['id']}/approve", {"note": "drill"})
    run_id = drill.ok("POST", f"/changes/{change['id']}/apply", {}, 201)["run_id"]
    drill.wait_running(run_id, worker="A")
    wanted = {"ios-001": "applied", "ios-002": "applied", HUNG: "pushing", "ios-004": "applied"}
    wait_until(
        lambda: states(drill, change["id"]) == wanted,
        60,
        f"three devices applied and {HUNG} mid-push",
    )
    return change["id"], run_id


def states(drill: Drill, change_id: int) -> dict[str, str]:
    shown: dict[str, Any] = drill.ok("GET", f"/changes/{change_id}")
    return {d["device"]["name"]: d["state"] for d in shown["devices"]}


def pushes(lab: StatefulLab, name: str) -> int:
    return sum(1 for command in lab.commands_of(name) if command.strip() == LINE)


def test_a_worker_stopping_mid_push_hands_over_and_nothing_is_pushed_twice(
    drill: Drill, lab: StatefulLab
) -> None:
    drill.start(
        workers=("A",), ROOKERY_CHANGE_SELF_APPROVAL="true", ROOKERY_WORKER_GRACE_SECONDS="3"
    )
    original = lab.config_of(HUNG)
    change_id, run_id = apply_with_one_device_hung(drill, lab)
    drill.start_worker("B")
    drill.wait_workers_alive(2)
    drill.kill("A", signal.SIGTERM)
    assert drill.workers["A"].wait(30) is not None, drill.describe()
    lab.hang(HUNG, 0)  # the device answers again: its rollback can go through

    ended = drill.wait_final(run_id, 90)
    assert ended["attempt"] == 2 and ended["worker"] == "B", (ended, drill.describe())
    found = states(drill, change_id)
    assert found == {
        "ios-001": "applied",
        "ios-002": "applied",
        HUNG: "rolled_back",
        "ios-004": "applied",
    }, drill.describe()
    assert drill.ok("GET", f"/changes/{change_id}")["status"] == "partially_applied"
    assert lab.config_of(HUNG) == original  # back to its snapshot
    for name in ("ios-001", "ios-002", "ios-004"):
        assert pushes(lab, name) == 1, (name, lab.commands_of(name))  # never twice
        assert LINE in lab.config_of(name)
    drill.assert_no_run_left()


def test_a_worker_killed_mid_push_leaves_the_device_uncertain_never_fine(
    drill: Drill, lab: StatefulLab
) -> None:
    drill.start(workers=("A",), ROOKERY_CHANGE_SELF_APPROVAL="true")
    change_id, run_id = apply_with_one_device_hung(drill, lab)
    drill.start_worker("B")
    drill.wait_workers_alive(2)
    drill.kill("A", signal.SIGKILL)

    ended = drill.wait_final(run_id, REPAIR_BOUND + 30)
    assert ended["status"].startswith("FAILED"), (ended, drill.describe())
    assert states(drill, change_id)[HUNG] == "pushing"
    shown = drill.ok("GET", f"/changes/{change_id}")
    assert shown["status"] == "failed"
    for name in ("ios-001", "ios-002", "ios-004"):
        assert pushes(lab, name) == 1
    drill.assert_no_run_left()
