"""Control of runs: timeouts, cancellation, dependencies, relaunch, stalled runs, shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from app.engine import reconciler
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.models import Device, DeviceResult, Event, JobRun, Tag
from app.services import jobs, runs
from tests.integration.helpers import (
    drain,
    event_types,
    make_job,
    queue_rows,
    reload,
    wait_for,
)


def start_worker(engine_config, tmp_path, name: str, **env_extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        {
            "DATABASE_URL": engine_config["DATABASE_URL"],
            "ROOKERY_INSTANCE": str(tmp_path / f"{name}-instance"),
            "ROOKERY_JOBS_PATH": engine_config["ROOKERY_JOBS_PATH"],
            "ROOKERY_WORKER_GRACE_SECONDS": "5",
            **env_extra,
        }
    )
    log = (tmp_path / f"{name}.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--concurrency", "2", "--name", name],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log_file = log  # type: ignore[attr-defined]
    return process


def stop_worker(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    process.log_file.close()  # type: ignore[attr-defined]
    return process.returncode


@pytest.fixture
def workers(engine_config, tmp_path):
    started: list[subprocess.Popen] = []

    def start(name: str = "w1", **env_extra: str) -> subprocess.Popen:
        process = start_worker(engine_config, tmp_path, name, **env_extra)
        started.append(process)
        return process

    yield start
    for process in started:
        if not process.log_file.closed:  # type: ignore[attr-defined]
            stop_worker(process, signal.SIGKILL)


def status_of(run_id: int) -> str:
    return reload(run_id).status


# ------------------------------------------------------------------- timeouts


def test_run_past_its_timeout_ends_timeout_and_frees_the_worker(ctx, workers):
    slow = make_job(name="slow", job_type="noop", params={"seconds": 60}, timeout_seconds=2)
    quick = make_job(name="quick", job_type="noop", priority="low")
    worker = workers("w1")
    slow_run = runs.start_run(slow, triggered_by="test")
    wait_for(lambda: status_of(slow_run.id) == "RUNNING", what="slow run to start")
    quick_run = runs.start_run(quick, triggered_by="test")
    began = time.monotonic()
    wait_for(lambda: status_of(slow_run.id) == "TIMEOUT", timeout=15, what="the timeout")
    assert time.monotonic() - began < 10
    slow_run = reload(slow_run.id)
    assert slow_run.message == "Timed out after 2s."
    assert event_types(slow_run.id)[-1] == "job.timeout"
    assert slow_run.attempt == 1, "a timeout is not retried"
    wait_for(
        lambda: status_of(quick_run.id) == "COMPLETED_SUCCESS",
        timeout=15,
        what="the next run on the freed worker",
    )
    assert stop_worker(worker) == 0, "an abandoned unit must not hold the worker at exit"


def test_timeout_above_the_maximum_is_refused(ctx):
    with pytest.raises(ValidationError, match="timeout_seconds"):
        make_job(name="too-long", job_type="noop", timeout_seconds=10**7)
    assert db.session.scalar(select(JobRun)) is None


# --------------------------------------------------------------- cancellation


def test_cancel_a_queued_run_is_immediate(ctx):
    run = runs.start_run(make_job(), triggered_by="test")
    cancelled = runs.cancel_run(run.id, actor="alice")
    assert cancelled.status == "CANCELLED"
    assert cancelled.message == "Cancelled by alice."
    assert queue_rows(run.id)[0][0] == "cancelled"
    drain(ctx)
    assert status_of(run.id) == "CANCELLED"
    event = db.session.scalar(select(Event).where(Event.type == "job.cancelled"))
    assert event.actor == "alice"


def test_cancel_a_finished_run_is_refused(ctx):
    run = runs.start_run(make_job(), triggered_by="test")
    drain(ctx)
    with pytest.raises(Conflict, match="already ended COMPLETED_SUCCESS"):
        runs.cancel_run(run.id, actor="alice")


def test_cancel_a_running_run_stops_it_within_seconds(ctx, workers):
    job = make_job(name="long", job_type="noop", params={"seconds": 60})
    workers("w1")
    run = runs.start_run(job, triggered_by="test")
    wait_for(lambda: status_of(run.id) == "RUNNING", what="the run to start")
    began = time.monotonic()
    runs.cancel_run(run.id, actor="bob")
    wait_for(lambda: status_of(run.id) == "CANCELLED", timeout=10, what="the cancel")
    assert time.monotonic() - began < 6
    run = reload(run.id)
    assert run.message == "Cancelled by bob."
    cancelled = db.session.scalars(
        select(Event)
        .where(Event.run_id == run.id, Event.type == "job.cancelled")
        .order_by(Event.id)
    ).all()
    assert cancelled[-1].actor == "bob" and cancelled[-1].status == "CANCELLED"
    wait_for(
        lambda: queue_rows(run.id)[0][0] == "aborted",
        timeout=10,
        what="procrastinate to mark the job aborted",
    )
    assert run.attempt == 1 and "job.retried" not in event_types(run.id)


def test_cancelled_device_run_skips_devices_not_started(ctx):
    tag = Tag(name="lab")
    db.session.add_all(
        [Device(name=f"d{i}", host="127.0.0.1", platform="cisco_ios", tags=[tag]) for i in range(3)]
    )
    db.session.commit()
    run = runs.start_run(
        make_job(name="visit", job_type="devjob", target_tags=["lab"]), triggered_by="test"
    )
    db.session.execute(
        text(
            "UPDATE job_runs SET cancel_requested_at = now(), cancelled_by = 'carol' WHERE id = :id"
        ),
        {"id": run.id},
    )
    db.session.commit()
    # The worker picks the run before noticing: every device ends "cancelled" or not at all
    drain(ctx)
    run = reload(run.id)
    assert run.status in {"CANCELLED", "COMPLETED_SUCCESS"}
    if run.status == "CANCELLED":
        statuses = set(db.session.scalars(select(DeviceResult.status)))
        assert statuses <= {"cancelled", "success"}


# ---------------------------------------------------------------- dependencies


def chain(ctx, *, a_mode: str = "ok"):
    a = make_job(name="A", params={"tag": "a", "mode": a_mode}, no_overlap=False)
    b = make_job(name="B", params={"tag": "b"}, depends_on_job_ids=[a.id], no_overlap=False)
    c = make_job(name="C", params={"tag": "c"}, depends_on_job_ids=[b.id], no_overlap=False)
    return a, b, c


def runs_of(name: str) -> list[JobRun]:
    return list(db.session.scalars(select(JobRun).where(JobRun.job_name == name)))


def test_chain_runs_in_order(ctx):
    _a, _b, c = chain(ctx)
    c_run = runs.start_run(c, triggered_by="test")
    assert c_run.status == "WAITING"
    (a_run,), (b_run,) = runs_of("A"), runs_of("B")
    assert (a_run.status, b_run.status) == ("QUEUED", "WAITING")
    assert a_run.signal_id == b_run.signal_id == c_run.signal_id
    for _ in range(4):
        drain(ctx)
    a_run, b_run, c_run = reload(a_run.id), reload(b_run.id), reload(c_run.id)
    assert [a_run.status, b_run.status, c_run.status] == ["COMPLETED_SUCCESS"] * 3
    assert a_run.finished_at <= b_run.started_at and b_run.finished_at <= c_run.started_at


def test_chain_stops_when_the_first_fails(ctx):
    _a, _b, c = chain(ctx, a_mode="raise")
    c_run = runs.start_run(c, triggered_by="test")
    for _ in range(3):
        drain(ctx)
    (a_run,), (b_run,) = runs_of("A"), runs_of("B")
    assert reload(a_run.id).status == "FAILED_UNEXPECTED"
    b_run, c_run = reload(b_run.id), reload(c_run.id)
    assert b_run.status == "CANCELLED"
    assert f"Dependency run #{a_run.id} (A) ended FAILED_UNEXPECTED" in b_run.message
    assert c_run.status == "CANCELLED"
    assert f"#{b_run.id} (B) ended CANCELLED" in c_run.message
    assert b_run.started_at is None and c_run.started_at is None


def test_dependency_reuses_an_active_run(ctx):
    a, b, _c = chain(ctx)
    a_run = runs.start_run(a, triggered_by="test")
    runs.start_run(b, triggered_by="test")
    assert [r.id for r in runs_of("A")] == [a_run.id]
    for _ in range(3):
        drain(ctx)
    db.session.expire_all()
    assert {r.status for r in runs_of("A") + runs_of("B")} == {"COMPLETED_SUCCESS"}


def test_waiting_for_given_runs(ctx):
    first = runs.start_run(make_job(name="first", no_overlap=False), triggered_by="test")
    second = runs.start_run(
        make_job(name="second", params={"tag": "s"}, no_overlap=False),
        triggered_by="test",
        depends_on_runs=[first.id],
    )
    assert second.status == "WAITING"
    with pytest.raises(ValidationError, match="Unknown run ids"):
        runs.start_run(
            make_job(name="third", no_overlap=False), triggered_by="test", depends_on_runs=[99999]
        )
    drain(ctx)
    drain(ctx)
    assert status_of(second.id) == "COMPLETED_SUCCESS"


def test_cycles_are_refused_when_saved(ctx):
    a, _b, c = chain(ctx)
    with pytest.raises(ValidationError, match="Dependency cycle: A -> C -> B -> A"):
        jobs.set_dependencies(a, [c.id], actor="test")
    assert [d.id for d in db.session.get(type(a), a.id).depends_on] == []
    with pytest.raises(ValidationError, match="cannot depend on itself"):
        jobs.set_dependencies(a, [a.id], actor="test")


def test_runs_waiting_too_long_are_cancelled(ctx):
    _a, _b, c = chain(ctx)
    c_run = runs.start_run(c, triggered_by="test")
    db.session.execute(
        text("UPDATE job_runs SET created_at = now() - interval '2 days' WHERE status = 'WAITING'")
    )
    db.session.commit()
    repairs = reconciler.reconcile(stalled_seconds=30, max_wait=timedelta(hours=24))
    (b_run,) = runs_of("B")
    assert repairs["waiting_expired"] == 1, "B expired; C is cancelled with it"
    assert "Waited more than 1440 minutes" in reload(b_run.id).message
    c_run = reload(c_run.id)
    assert c_run.status == "CANCELLED"
    assert f"Dependency run #{b_run.id}" in c_run.message
    drain(ctx)  # A, which nothing waits for any more, runs


# -------------------------------------------------------------------- relaunch


def test_relaunch_all_or_failed_devices_only(ctx):
    tag = Tag(name="edge")
    db.session.add_all(
        [
            Device(name="e1", host="127.0.0.1", platform="cisco_ios", tags=[tag]),
            Device(name="e2-bad", host="127.0.0.1", platform="cisco_ios", tags=[tag]),
        ]
    )
    db.session.commit()
    job = make_job(name="edge", job_type="devjob", target_tags=["edge"])
    first = runs.start_run(job, triggered_by="test")
    with pytest.raises(Conflict, match="still QUEUED"):
        runs.relaunch_run(first.id, actor="test")
    drain(ctx)
    failed_only = runs.relaunch_run(first.id, failed_only=True, actor="test")
    bad = db.session.scalar(select(Device).where(Device.name == "e2-bad"))
    assert failed_only.device_ids == [bad.id]
    assert failed_only.relaunch_of_id == first.id
    assert failed_only.triggered_by == f"relaunch:{first.id}"
    drain(ctx)
    assert {
        r.device_name
        for r in db.session.scalars(
            select(DeviceResult).where(DeviceResult.run_id == failed_only.id)
        )
    } == {"e2-bad"}
    whole = runs.relaunch_run(first.id, actor="test")
    assert whole.device_ids is None
    drain(ctx)
    assert reload(whole.id).progress_total == 2


# --------------------------------------------------------- workers that go away


def test_a_killed_workers_run_is_recovered_by_another(ctx, workers):
    job = make_job(
        name="victim", job_type="noop", params={"seconds": 4}, max_retries=1, retry_delay_seconds=1
    )
    first = workers("w1")
    run = runs.start_run(job, triggered_by="test")
    wait_for(lambda: status_of(run.id) == "RUNNING", what="the run to start")
    stop_worker(first, signal.SIGKILL)
    time.sleep(3)
    repairs = reconciler.reconcile(stalled_seconds=2)
    assert repairs["running_retry"] == 1
    run = reload(run.id)
    assert run.status == "SCHEDULED"
    assert "stopped answering" in run.error
    workers("w2")
    run = wait_for(
        lambda: (r := reload(run.id)).run_status.is_final and r,
        timeout=30,
        what="the second worker to finish the run",
    )
    assert (run.status, run.attempt, run.worker_name) == ("COMPLETED_SUCCESS", 2, "w2")


def test_a_killed_workers_last_attempt_fails_unexpected(ctx, workers):
    job = make_job(name="victim", job_type="noop", params={"seconds": 30}, max_retries=0)
    first = workers("w1")
    run = runs.start_run(job, triggered_by="test")
    wait_for(lambda: status_of(run.id) == "RUNNING", what="the run to start")
    stop_worker(first, signal.SIGKILL)
    time.sleep(3)
    assert reconciler.reconcile(stalled_seconds=2)["running_failed"] == 1
    run = reload(run.id)
    assert run.status == "FAILED_UNEXPECTED"
    assert event_types(run.id)[-1] == "job.failed"
    assert queue_rows(run.id)[0][0] == "failed"


def test_shutdown_hands_the_run_to_another_worker(ctx, workers):
    job = make_job(name="handoff", job_type="noop", params={"seconds": 6}, max_retries=0)
    first = workers("w1", ROOKERY_WORKER_GRACE_SECONDS="1")
    run = runs.start_run(job, triggered_by="test")
    wait_for(lambda: status_of(run.id) == "RUNNING", what="the run to start")
    assert stop_worker(first, signal.SIGTERM) == 0
    run = reload(run.id)
    assert run.status == "QUEUED", "aborted at shutdown, handed back to the queue"
    assert (
        "handed back"
        in db.session.scalars(
            select(Event.message).where(Event.run_id == run.id).order_by(Event.id.desc())
        ).first()
    )
    workers("w2")
    run = wait_for(
        lambda: (r := reload(run.id)).run_status.is_final and r,
        timeout=30,
        what="the second worker to finish the handed-back run",
    )
    assert (run.status, run.attempt, run.worker_name) == ("COMPLETED_SUCCESS", 2, "w2")


def test_deleting_a_job_with_a_run_in_flight_is_refused(ctx):
    job = make_job(name="busy")
    run = runs.start_run(job, triggered_by="test")
    with pytest.raises(Conflict, match=f"has run #{run.id} queued; cancel it first"):
        jobs.delete_job(job.id, actor="test")
    runs.cancel_run(run.id, actor="test")
    jobs.delete_job(job.id, actor="test")
    kept = reload(run.id)
    assert (kept.job_id, kept.job_name, kept.status) == (None, "busy", "CANCELLED")


def test_statistics_show_each_live_workers_concurrency(ctx, workers):
    from app.services import stats

    workers("w1")
    report = wait_for(
        lambda: (r := stats.workers_alive())["alive"] == 1 and r["workers"][0]["concurrency"] and r,
        what="the worker's details",
    )
    (worker,) = report["workers"]
    assert (worker["name"], worker["concurrency"]) == ("w1", 2)
    assert report["concurrency"] == 2 and worker["pid"] and worker["host"]


def test_a_worker_in_its_grace_period_keeps_heartbeating_and_its_run(ctx, workers):
    """Issue 12.4: a grace period longer than the stall window must not make a busy
    worker look dead: its run ends once, on it, with no repair."""
    job = make_job(name="graceful", job_type="noop", params={"seconds": 8}, max_retries=1)
    first = workers("w1", ROOKERY_WORKER_GRACE_SECONDS="30", ROOKERY_WORKER_STALLED_SECONDS="3")
    run = runs.start_run(job, triggered_by="test")
    wait_for(lambda: status_of(run.id) == "RUNNING", what="the run to start")
    first.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while not reload(run.id).run_status.is_final and time.monotonic() < deadline:
        repairs = reconciler.reconcile(stalled_seconds=3)
        assert not repairs, f"the reconciler took the run of a worker in its grace: {repairs}"
        time.sleep(1)
    run = reload(run.id)
    assert (run.status, run.attempt, run.worker_name, run.error) == (
        "COMPLETED_SUCCESS",
        1,
        "w1",
        None,
    )
    assert event_types(run.id).count("job.started") == 1
    assert first.wait(30) == 0, "the worker leaves by itself once its run has ended"
