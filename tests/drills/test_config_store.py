"""Drills: good backups are kept when one device hangs (issue item 5) or the push fails (6)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from app.demo_lab import default_fleet
from tests.drills.conftest import Drill

pytestmark = [pytest.mark.drills, pytest.mark.acceptance]

JOB_TIMEOUT = 20


def test_a_hung_device_keeps_the_good_backups(drill: Drill) -> None:
    """4 good devices + 1 hanging, a 20 s job timeout: TIMEOUT, and git holds the 4 configs."""
    # The SSH read timeout outlasts the job's: the job timeout is what ends the run.
    drill.start(workers=("A", "B"), ROOKERY_SSH_READ_TIMEOUT="120")
    lab = drill.lab(default_fleet(5))
    names = [d.name for d in lab.devices]
    good, hung = names[:4], names[4]
    lab.set_hanging(hung)
    drill.add_devices(lab)
    head_before = drill.git_head()
    job = drill.create_job(
        "backup", "config_backup", targets={"tags": ["drill"]}, timeout_seconds=JOB_TIMEOUT
    )
    run = drill.start_run(job["id"])

    ended = drill.wait_final(run["id"], JOB_TIMEOUT + 40)
    assert ended["status"] == "TIMEOUT", (
        f"run #{run['id']} with a hung device ended {ended['status']}: {ended['error']!r}\n"
        f"{drill.describe()}"
    )
    drill.assert_one_execution_per_attempt(run["id"])
    head = drill.git_head()
    assert head and head != head_before, (
        f"git HEAD unchanged ({head_before}): the 4 good backups were thrown away"
    )
    files = drill.files_at_head()
    missing = drill.device_files(good) - files
    assert not missing, f"git HEAD lacks the good devices' configs: {sorted(missing)}"
    for name in good:
        text = drill.git("show", f"HEAD:{next(iter(drill.device_files([name])))}")
        assert f"{name}" in text, f"{name}'s committed config does not look like its own"
    commit = (ended["result"] or {}).get("commit")
    assert commit, f"the run does not record its commit: result {ended['result']!r}"
    assert commit == head, f"the run records {commit}, git HEAD is {head}"
    by_device = {r["device"]: r for r in drill.results(run["id"])}
    for name in good:
        assert by_device.get(name, {}).get("status") == "success", by_device.get(name)
    drill.assert_no_run_left()


def _refusing_remote(path: Path) -> Path:
    """A bare repository whose pre-receive hook refuses every push."""
    subprocess.run(
        ["git", "init", "-q", "--bare", "--initial-branch=main", str(path)],
        check=True,
        timeout=30,
    )
    hook = path / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'drill: this remote refuses pushes' >&2\nexit 1\n")
    hook.chmod(0o755)
    return hook


def test_a_failing_push_is_a_warning_and_is_retried(drill: Drill, tmp_path: Path) -> None:
    """Push refused: the backup still succeeds, is recorded, notified; pushed once fixed."""
    remote = tmp_path / "remote.git"
    hook = _refusing_remote(remote)
    drill.start(
        workers=("A", "B"),
        ROOKERY_CONFIG_REMOTE=str(remote),
        ROOKERY_WEBHOOK_ALLOW="127.0.0.1/32",  # the receiver listens on 127.0.0.1
    )
    lab = drill.lab(default_fleet(2))
    names = [d.name for d in lab.devices]
    drill.add_devices(lab)
    receiver = drill.receiver()
    job = drill.create_job("backup", "config_backup", targets={"tags": ["drill"]}, max_retries=1)
    drill.ok(
        "POST",
        f"/jobs/{job['id']}/webhooks",
        {"url": receiver.url, "events": ["config_changed"]},
        201,
    )
    run = drill.start_run(job["id"])

    ended = drill.wait_final(run["id"], 60)
    assert ended["status"] == "COMPLETED_SUCCESS", (
        f"a backup whose push was refused ended {ended['status']} (a push failure is a "
        f"warning): {ended['error']!r}\n{drill.describe()}"
    )
    assert ended["attempt"] == 1, f"the backup was retried for a push failure: {ended}"
    drill.assert_one_execution_per_attempt(run["id"])
    commit = (ended["result"] or {}).get("commit")
    head = drill.git_head()
    assert commit and commit == head, f"run records commit {commit!r}, local HEAD is {head}"
    missing = drill.device_files(names) - drill.files_at_head()
    assert not missing, f"local HEAD lacks {sorted(missing)}"
    results = drill.results(run["id"])
    assert all(r["commit"] == commit for r in results), results

    report = drill.wait_health(
        lambda r: (r.get("config_store") or {}).get("push") == "failing",
        15,
        '"config_store": {"push": "failing"} in /health (HTTP 200)',
    )
    assert report["status"] == "ok", report

    deadline = time.monotonic() + 30
    while not receiver.of("config_changed") and time.monotonic() < deadline:
        time.sleep(0.25)
    delivered = receiver.of("config_changed")
    assert delivered, (
        f"no config_changed webhook reached 127.0.0.1 in 30 s "
        f"(got {[d.event for d in receiver.deliveries]})\n{drill.describe()}"
    )
    assert commit in str(delivered[0].body), f"the webhook does not name {commit}"

    hook.unlink()  # the remote accepts pushes again: a worker retries on its own
    fixed_at = time.monotonic()
    drill.wait_health(
        lambda r: (r.get("config_store") or {}).get("push") == "ok",
        90,
        '"config_store": {"push": "ok"} in /health after the remote was fixed',
    )
    pushed = drill.git("rev-parse", "refs/heads/main", repo=remote).strip()
    assert pushed == drill.git_head(), (
        f"remote main is {pushed}, local HEAD {drill.git_head()} "
        f"({time.monotonic() - fixed_at:.0f}s after the fix)"
    )
    drill.assert_no_run_left()
