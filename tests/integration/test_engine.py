"""The job engine on a real PostgreSQL with real procrastinate workers.

Most tests drain the queue with an in-process procrastinate worker (``wait=False``:
it stops when nothing is due); the end-to-end tests run ``rookery worker`` as a
separate process.
"""

from __future__ import annotations

import os
import select as select_module
import signal
import subprocess
import sys
import time
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import func, select, text

from app import audit, events
from app.errors import Conflict
from app.extensions import db
from app.models import Device, Event, JobLog, JobRun, Tag, utcnow
from app.services import runs
from tests.integration.helpers import drain, event_types, make_job, queue_rows, reload

# ------------------------------------------------------------ transactional enqueue


def _assert_no_run_remains() -> None:
    """Neither the run row, its queue entry nor its events exist."""
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(JobRun)) == 0
    assert db.session.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar() == 0
    assert db.session.scalar(select(func.count()).select_from(Event)) == 0


def test_start_run_commits_row_and_queue_entry_together(ctx):
    job = make_job(priority="high")
    run = runs.start_run(job, triggered_by="test")
    assert run.status == "QUEUED"
    assert queue_rows(run.id) == [("todo", 10, 0)]
    assert run.procrastinate_job_id is not None
    assert event_types(run.id) == ["job.created", "job.queued"]
    drain(ctx)


def test_failure_between_insert_and_commit_leaves_nothing(ctx, monkeypatch):
    job = make_job()
    real_record = events.record

    def failing_record(session, run, type_, *args, **kwargs):
        if type_ == events.QUEUED:  # after the INSERT and the defer, before the COMMIT
            raise RuntimeError("crash before commit")
        return real_record(session, run, type_, *args, **kwargs)

    monkeypatch.setattr(events, "record", failing_record)
    with pytest.raises(RuntimeError, match="crash before commit"):
        runs.start_run(job, triggered_by="test")
    _assert_no_run_remains()


def test_failure_after_every_row_is_written_leaves_nothing(ctx, monkeypatch):
    """Run, queue entry, events and audit entry written, then a crash before the COMMIT."""
    job = make_job()
    real_record = audit.record

    def crash(**kwargs):
        real_record(**kwargs)
        if kwargs.get("action") == "run":
            assert db.session.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar() == 1
            raise RuntimeError("crash before commit")

    monkeypatch.setattr(audit, "record", crash)
    with pytest.raises(RuntimeError, match="crash before commit"):
        runs.start_run(job, triggered_by="test")
    _assert_no_run_remains()
    audit_rows = text("SELECT count(*) FROM audit_log WHERE action = 'run'")
    assert db.session.execute(audit_rows).scalar() == 0


def test_no_overlap_refuses_a_second_start_clearly(ctx):
    job = make_job(no_overlap=True)
    first = runs.start_run(job, triggered_by="test")
    with pytest.raises(Conflict, match=f"already has run #{first.id} queued"):
        runs.start_run(job, triggered_by="test")
    assert db.session.scalar(select(func.count()).select_from(JobRun)) == 1
    drain(ctx)
    assert reload(first.id).status == "COMPLETED_SUCCESS"


def test_queueing_lock_refusal_does_not_break_the_transaction(ctx, monkeypatch):
    """Two starts racing past the check: the queueing lock refuses the second."""
    job = make_job(no_overlap=True)
    runs.start_run(job, triggered_by="test")
    monkeypatch.setattr(runs, "active_run", lambda job: None)
    with pytest.raises(Conflict, match="already has a run queued"):
        runs.start_run(job, triggered_by="test")
    # the session is usable and holds nothing of the refused run
    assert db.session.scalar(select(func.count()).select_from(JobRun)) == 1
    assert db.session.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar() == 1
    drain(ctx)


def test_disabled_job_is_refused(ctx):
    job = make_job(enabled=False)
    with pytest.raises(Conflict, match="disabled"):
        runs.start_run(job, triggered_by="test")


# ------------------------------------------------------------------ the runner


def test_global_job_succeeds_with_events_logs_and_result(ctx):
    job = make_job(params={"tag": "ok", "token": "s3cr3t-token"})
    run = runs.start_run(job, triggered_by="test")
    drain(ctx)
    run = reload(run.id)
    assert run.status == "COMPLETED_SUCCESS"
    assert run.message == "wrote it"
    assert run.result == {"success": True, "message": "wrote it", "data": {"n": 1}}
    assert (run.progress_done, run.progress_total) == (1, 1)
    assert run.started_at <= run.finished_at and run.duration_ms >= 0
    assert db.session.scalar(select(Tag).where(Tag.name == "ok-1")) is not None
    assert event_types(run.id) == ["job.created", "job.queued", "job.started", "job.completed"]
    completed = db.session.scalar(select(Event).where(Event.type == "job.completed"))
    assert completed.post_data == {"written": True}
    assert completed.signal_id == run.signal_id
    created = db.session.scalar(select(Event).where(Event.type == "job.created"))
    assert created.pre_data["params"]["token"] == "***"
    line = db.session.scalar(select(JobLog).where(JobLog.log_type == "job"))
    assert (line.source, line.run_id, line.job_id, line.level) == (
        "worker.job.writer",
        run.id,
        job.id,
        "info",
    )
    assert line.meta == {"tag": "ok", "password": "***"}
    assert queue_rows(run.id)[0][0] == "succeeded"


def test_secret_params_are_sealed_and_never_shown(ctx):
    job = make_job(params={"token": "s3cr3t-token"})
    assert job.params["token"] != "s3cr3t-token"
    run = runs.start_run(job, triggered_by="test")
    drain(ctx)
    dump = " ".join(
        str(row)
        for row in db.session.execute(
            text(
                "SELECT e.pre_data, e.post_data, e.data, e.message FROM events e "
                "UNION ALL SELECT meta, NULL, NULL, message FROM job_logs "
                "UNION ALL SELECT before, after, NULL, summary FROM audit_log"
            )
        ).all()
    )
    assert "s3cr3t-token" not in dump
    assert reload(run.id).status == "COMPLETED_SUCCESS"


def test_success_false_is_a_completed_failure_without_retry(ctx):
    job = make_job(params={"mode": "fail"}, max_retries=3)
    run = runs.start_run(job, triggered_by="test")
    drain(ctx)
    run = reload(run.id)
    assert (run.status, run.attempt, run.message) == ("COMPLETED_FAILURE", 1, "declined")
    assert "job.retried" not in event_types(run.id)
    # the unit committed: a failure by verdict, not by exception
    assert db.session.scalar(select(Tag).where(Tag.name == "written-1")) is not None


def test_exception_rolls_back_the_unit_and_retries_with_growing_delays(ctx):
    job = make_job(params={"mode": "raise"}, max_retries=2, retry_delay_seconds=1)
    run = runs.start_run(job, triggered_by="test")
    drain(ctx)
    first = reload(run.id)
    assert first.status == "SCHEDULED"
    assert first.scheduled_at > utcnow() - timedelta(seconds=1)
    assert "boom after writing" in first.error
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not reload(run.id).run_status.is_final:
        time.sleep(0.3)
        drain(ctx)
    run = reload(run.id)
    assert run.status == "FAILED_UNEXPECTED"
    assert run.attempt == 3
    assert "RuntimeError: boom after writing" in run.error
    assert "Traceback" in run.error_traceback
    assert db.session.scalar(select(func.count()).select_from(Tag)) == 0, "unit not rolled back"
    types = event_types(run.id)
    assert types.count("job.started") == 3
    assert types.count("job.retried") == 2
    assert types[-1] == "job.failed"
    retried = db.session.scalars(
        select(Event).where(Event.type == "job.retried").order_by(Event.id)
    ).all()
    assert [e.data["delay_seconds"] for e in retried] == [1, 2]
    failed = db.session.scalar(select(Event).where(Event.type == "job.failed"))
    assert "boom after writing" in failed.exception
    assert queue_rows(run.id)[0][0] == "failed"
    runner_errors = db.session.scalars(select(JobLog).where(JobLog.log_type == "runner")).all()
    assert [r.meta["error_type"] for r in runner_errors] == ["UNEXPECTED"] * 3
    # The job's own line of each attempt was committed on its own: the rollback kept it.
    lines = db.session.scalars(select(JobLog).where(JobLog.log_type == "job")).all()
    assert [(r.message, r.run_id, r.job_id) for r in lines] == [("writing", run.id, job.id)] * 3
    assert lines[0].meta == {"tag": "written", "password": "***"}


def test_unregistered_job_type_fails_unexpected_without_retry(ctx):
    job = make_job(max_retries=3)
    run = runs.start_run(job, triggered_by="test")
    db.session.execute(
        text("UPDATE job_runs SET job_type = 'ghost' WHERE id = :id"), {"id": run.id}
    )
    db.session.commit()
    drain(ctx)
    run = reload(run.id)
    assert run.status == "FAILED_UNEXPECTED"
    assert "not registered" in run.error
    assert run.attempt == 1
    assert event_types(run.id)[-1] == "job.failed"


def test_priorities_run_high_before_low_fifo_within(ctx):
    order = []
    for name, priority in [
        ("low", "low"),
        ("normal-a", "normal"),
        ("crit", "critical"),
        ("high", "high"),
        ("normal-b", "normal"),
    ]:
        job = make_job(name=name, priority=priority, no_overlap=False)
        order.append((name, runs.start_run(job, triggered_by="test").id))
    drain(ctx, concurrency=1)
    started = sorted(order, key=lambda item: reload(item[1]).started_at)
    assert [name for name, _ in started] == ["crit", "high", "normal-a", "normal-b", "low"]


def test_run_now_returns_the_message_and_propagates_errors(ctx):
    make_job(name="direct", params={"tag": "now"})
    assert runs.run_now("direct") == "wrote it"
    assert runs.run_now("writer", tag="typed") == "wrote it"
    with pytest.raises(RuntimeError, match="boom after writing"):
        runs.run_now("direct", mode="raise", tag="boom")
    db.session.expire_all()
    statuses = db.session.scalars(select(JobRun.status).order_by(JobRun.id)).all()
    assert statuses == ["COMPLETED_SUCCESS", "COMPLETED_SUCCESS", "FAILED_UNEXPECTED"]
    assert db.session.execute(text("SELECT count(*) FROM procrastinate_jobs")).scalar() == 0


def test_run_now_without_events(ctx):
    runs.run_now("writer", eventlog=False)
    assert db.session.scalar(select(func.count()).select_from(Event)) == 0


def test_event_logging_setting_turns_events_off(engine_config, app_factory):
    app = app_factory({**engine_config, "ROOKERY_EVENT_LOGGING": False})
    with app.app_context():
        run = runs.start_run(make_job(), triggered_by="test")
        drain(app)
        assert reload(run.id).status == "COMPLETED_SUCCESS"
        assert db.session.scalar(select(func.count()).select_from(Event)) == 0


def test_device_job_fans_out_and_reports_partial_failure(ctx):
    core = Tag(name="core")
    db.session.add_all(
        [
            Device(name="r1", host="127.0.0.1", platform="cisco_ios", tags=[core]),
            Device(name="r2-bad", host="127.0.0.1", platform="cisco_ios", tags=[core]),
            Device(
                name="r3-off", host="127.0.0.1", platform="cisco_ios", tags=[core], enabled=False
            ),
            Device(name="other", host="127.0.0.1", platform="cisco_ios"),
        ]
    )
    db.session.commit()
    job = make_job(name="visit", job_type="devjob", target_tags=["core"])
    run = runs.start_run(job, triggered_by="test")
    drain(ctx)
    run = reload(run.id)
    assert run.status == "COMPLETED_PARTIAL_FAILURE"
    assert (run.progress_done, run.progress_total) == (2, 2)
    results = {
        r.device_name: (r.status, r.message)
        for r in db.session.execute(
            text("SELECT device_name, status, message FROM device_results")
        ).all()
    }
    assert results == {
        "r1": ("success", "r1 ok (core)"),
        "r2-bad": ("failed", "ConnectionError: r2-bad did not answer"),
    }
    assert event_types(run.id).count("job.progress") == 2


def test_device_job_without_matching_devices(ctx):
    run = runs.start_run(
        make_job(name="empty", job_type="devjob", target_tags=["nothing"]), triggered_by="test"
    )
    drain(ctx)
    assert reload(run.id).status == "COMPLETED_NO_DEVICES"


def test_logs_events_and_status_are_announced(ctx, database_url):
    with psycopg.connect(database_url, autocommit=True) as listener:
        for channel in ("rookery_run", "rookery_event", "rookery_log"):
            listener.execute(f"LISTEN {channel}")
        run = runs.start_run(make_job(), triggered_by="test")
        drain(ctx)
        received = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            select_module.select([listener.fileno()], [], [], 0.2)
            received.extend(listener.notifies(timeout=0.2, stop_after=100))
            if any(
                n.channel == "rookery_run" and '"COMPLETED_SUCCESS"' in n.payload for n in received
            ):
                break
    by_channel = {}
    for note in received:
        by_channel.setdefault(note.channel, []).append(note.payload)
    event_ids = set(db.session.scalars(select(Event.id).where(Event.run_id == run.id)))
    import json

    announced_events = [json.loads(p) for p in by_channel["rookery_event"]]
    assert {n["id"] for n in announced_events if n["run_id"] == run.id} == event_ids
    log_ids = set(db.session.scalars(select(JobLog.id).where(JobLog.run_id == run.id)))
    # (other lines, e.g. a retention tick's, may be announced too: take this run's)
    announced = [json.loads(p) for p in by_channel["rookery_log"]]
    assert {n["id"] for n in announced if n["run_id"] == run.id} == log_ids
    statuses = [
        n["status"] for p in by_channel["rookery_run"] if (n := json.loads(p))["run_id"] == run.id
    ]
    # PENDING is never seen outside: the insert is announced with the committed status.
    assert statuses[0] == "QUEUED" and statuses[-1] == "COMPLETED_SUCCESS"
    assert "PENDING" not in statuses
    assert "RUNNING" in statuses


# ---------------------------------------------------------- a real worker process


@pytest.fixture
def worker_process(engine_config, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        {
            "DATABASE_URL": engine_config["DATABASE_URL"],
            "ROOKERY_INSTANCE": str(tmp_path / "worker-instance"),
            "ROOKERY_JOBS_PATH": engine_config["ROOKERY_JOBS_PATH"],
            "ROOKERY_RETRY_DELAY_SECONDS": "1",
            "ROOKERY_WORKER_GRACE_SECONDS": "5",
        }
    )
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--concurrency", "4"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def wait_final(run_id: int, timeout: float = 30) -> JobRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = reload(run_id)
        if run.run_status.is_final:
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} still {reload(run_id).status} after {timeout}s")


def test_worker_process_runs_jobs_end_to_end(ctx, worker_process):
    ok = runs.start_run(make_job(name="ok"), triggered_by="test")
    flaky = runs.start_run(
        make_job(name="flaky", params={"mode": "raise"}, max_retries=1), triggered_by="test"
    )
    assert wait_final(ok.id).status == "COMPLETED_SUCCESS"
    flaky = wait_final(flaky.id)
    assert (flaky.status, flaky.attempt) == ("FAILED_UNEXPECTED", 2)
    assert event_types(flaky.id).count("job.retried") == 1
    assert worker_process.poll() is None, "a failing job must not take the worker down"
