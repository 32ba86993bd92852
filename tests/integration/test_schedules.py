"""Schedules and the scheduler's tick on a real PostgreSQL.

Most tests call ``scheduler.tick(now)`` directly (two threads for the race) and drain
the queue with an in-process procrastinate worker; the last one runs two ``rookery
worker`` processes and lets procrastinate's periodic deferrer drive the tick.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app.engine import queue, scheduler  # importing scheduler registers rookery.schedule_tick
from app.errors import ValidationError
from app.extensions import db
from app.models import AuditEntry, JobLog, JobRun, Schedule, ScheduleFire, utcnow
from app.services import jobs, runs, schedules
from tests.conftest import make_config

NIGHTLY_JOB = '''
    """Pretends to back something up every night."""

    JOB_META = {
        "job_type": "nightly",
        "targets": "none",
        "default_schedule": {"kind": "cron", "cron": "0 2 * * *"},
    }

    def run(device, job_id, config, db):
        return "done"
'''


@pytest.fixture
def app(database_url, tmp_path, app_factory):  # overrides the plain app: one more job type
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    (jobs_dir / "nightly.py").write_text(textwrap.dedent(NIGHTLY_JOB))
    return app_factory(
        make_config(database_url, tmp_path / "instance", ROOKERY_JOBS_PATH=str(jobs_dir))
    )


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def drain(app) -> None:
    """Run a procrastinate worker in this process until nothing is due."""
    queue.bind(app)
    queue.queue_app.run_worker(
        wait=False, concurrency=1, listen_notify=False, install_signal_handlers=False
    )


def make_job(name: str = "tick-me", **kwargs):
    kwargs.setdefault("no_overlap", False)
    return jobs.create_job(name=name, job_type="noop", actor="test", **kwargs)


def make_due(schedule: Schedule, ago: timedelta = timedelta(seconds=30)) -> datetime:
    """Move the schedule's next fire into the past; returns that fire time."""
    fire_at = (utcnow() - ago).replace(microsecond=0)
    schedule.next_fire_at = fire_at
    db.session.commit()
    return fire_at


def count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def run_statuses() -> set[str]:
    db.session.expire_all()
    return set(db.session.scalars(select(JobRun.status)))


def fires_of(schedule_id: int) -> list[ScheduleFire]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(ScheduleFire)
            .where(ScheduleFire.schedule_id == schedule_id)
            .order_by(ScheduleFire.fire_at)
        )
    )


def reload(schedule_id: int) -> Schedule:
    db.session.expire_all()
    schedule = db.session.get(Schedule, schedule_id)
    assert schedule is not None
    return schedule


# -------------------------------------------------------------------------- the service


BAD_INPUT = [
    ({"kind": "cron", "cron": "0 25 * * *"}, "cron", "Not a valid cron expression: "),
    ({"kind": "cron", "cron": "* * * *"}, "cron", "Not a valid cron expression: "),
    ({"kind": "interval", "interval_minutes": 0}, "interval_minutes", "At least 1 minute."),
    ({"kind": "interval", "interval_minutes": ""}, "interval_minutes", "Give a number"),
    (
        {"kind": "once", "run_at": datetime(2020, 1, 1, tzinfo=UTC)},
        "run_at",
        "This time is in the past.",
    ),
    (
        {"kind": "cron", "cron": "0 2 * * *", "timezone": "Europe/Atlantis"},
        "timezone",
        "Unknown time zone 'Europe/Atlantis'.",
    ),
    ({"kind": "hourly"}, "kind", "Choose interval, cron or once."),
]


@pytest.mark.parametrize(("options", "field", "message"), BAD_INPUT)
def test_bad_input_is_refused_clearly_and_nothing_is_saved(ctx, options, field, message):
    job = make_job()
    with pytest.raises(ValidationError) as caught:
        schedules.create_schedule(job, actor="test", **options)
    assert message in caught.value.fields[field]
    assert message in caught.value.message
    db.session.rollback()
    assert count(Schedule) == 0
    assert (
        db.session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.object_type == "schedule")
        )
        == 0
    )


def test_create_computes_the_next_fire_and_audits(ctx):
    job = make_job()
    before = utcnow()
    every = schedules.create_schedule(job, kind="interval", interval_minutes=15, actor="alice")
    assert every.next_fire_at is not None
    assert before < every.next_fire_at <= before + timedelta(minutes=15)
    assert every.next_fire_at.second == 0 and every.next_fire_at.microsecond == 0
    nightly = schedules.create_schedule(
        job, kind="cron", cron="0 2 * * *", timezone="Europe/Berlin", actor="alice"
    )
    local = nightly.next_fire_at.astimezone(schedules.zone("Europe/Berlin"))
    assert (local.hour, local.minute) == (2, 0)
    assert schedules.describe(nightly) == "cron 0 2 * * * (Europe/Berlin)"
    later = utcnow() + timedelta(days=2)
    once = schedules.create_schedule(job, kind="once", run_at=later, enabled=False)
    assert (once.enabled, once.next_fire_at, once.run_at) == (False, None, later)
    entry = db.session.scalar(
        select(AuditEntry).where(
            AuditEntry.object_type == "schedule", AuditEntry.object_id == str(every.id)
        )
    )
    assert (entry.action, entry.actor) == ("create", "alice")
    assert "every 15 minutes" in entry.summary
    assert entry.after["interval_minutes"] == 15
    listed = db.session.scalars(schedules.list_schedules(job_id=job.id)).all()
    assert [s.id for s in listed] == [every.id, nightly.id, once.id]


def test_update_enable_disable_and_delete(ctx):
    job = make_job()
    schedule = schedules.create_schedule(job, kind="interval", interval_minutes=5)
    schedules.update_schedule(schedule, kind="cron", cron="*/10 * * * *", actor="bob")
    schedule = reload(schedule.id)
    assert (schedule.kind, schedule.cron, schedule.interval_minutes) == (
        "cron",
        "*/10 * * * *",
        None,
    )
    assert schedule.next_fire_at.minute % 10 == 0
    with pytest.raises(ValidationError, match="At least 1 minute"):
        schedules.update_schedule(schedule, kind="interval", interval_minutes=0)
    db.session.rollback()
    assert reload(schedule.id).kind == "cron"

    schedules.set_enabled(schedule, False, actor="bob")
    assert (reload(schedule.id).enabled, reload(schedule.id).next_fire_at) == (False, None)
    schedules.set_enabled(schedule, True, actor="bob")
    assert reload(schedule.id).next_fire_at > utcnow()

    schedules.delete_schedule(schedule, actor="bob")
    assert count(Schedule) == 0
    actions = db.session.scalars(
        select(AuditEntry.action)
        .where(AuditEntry.object_type == "schedule")
        .order_by(AuditEntry.id)
    ).all()
    assert actions == ["create", "update", "disable", "enable", "delete"]


def test_deleting_a_job_deletes_its_schedules_and_keeps_its_runs(ctx):
    job = make_job()
    schedule = schedules.create_schedule(job, kind="interval", interval_minutes=5)
    make_due(schedule)
    (run_id,) = scheduler.tick()
    drain(ctx)
    assert len(job.schedules) == 1  # loaded: the ORM must not try to orphan them

    jobs.delete_job(job.id, actor="alice")

    assert count(Schedule) == 0 and count(ScheduleFire) == 0
    run = db.session.get(JobRun, run_id)
    assert (run.job_id, run.job_name, run.status) == (None, "tick-me", "COMPLETED_SUCCESS")
    assert scheduler.tick() == []


def test_a_past_one_time_schedule_cannot_be_enabled(ctx):
    job = make_job()
    once = schedules.create_schedule(job, kind="once", run_at=utcnow() + timedelta(hours=1))
    once.run_at = utcnow() - timedelta(minutes=1)
    once.enabled = False
    db.session.commit()
    with pytest.raises(ValidationError, match="time has passed") as caught:
        schedules.set_enabled(once, True)
    assert caught.value.fields == {"run_at": "This time is in the past."}


def test_default_schedule_prefills_from_job_meta(ctx):
    assert schedules.default_schedule_for("nightly") == {
        "kind": "cron",
        "interval_minutes": None,
        "cron": "0 2 * * *",
        "timezone": "UTC",
        "run_at": None,
    }
    assert schedules.default_schedule_for("noop") is None
    assert schedules.default_schedule_for("no-such-type") is None


# ----------------------------------------------------------------------------- the tick


def test_tick_starts_one_run_per_due_schedule_and_advances(ctx):
    first = schedules.create_schedule(make_job("a"), kind="interval", interval_minutes=10)
    second = schedules.create_schedule(make_job("b"), kind="cron", cron="*/5 * * * *")
    idle = schedules.create_schedule(make_job("c"), kind="interval", interval_minutes=10)
    due_a, due_b = make_due(first), make_due(second)
    now = utcnow()

    started = scheduler.tick(now)

    assert len(started) == 2
    for schedule_id, fire_at in ((first.id, due_a), (second.id, due_b)):
        (fire,) = fires_of(schedule_id)
        assert fire.fire_at == fire_at and fire.run_id in started
        run = db.session.get(JobRun, fire.run_id)
        assert (run.triggered_by, run.status) == (f"schedule:{schedule_id}", "QUEUED")
        schedule = reload(schedule_id)
        assert schedule.last_fire_at == fire_at
        assert schedule.next_fire_at > now
    assert fires_of(idle.id) == []
    assert scheduler.tick(now) == [], "a second tick for the same moment fires nothing"
    drain(ctx)
    assert run_statuses() == {"COMPLETED_SUCCESS"}


def test_concurrent_ticks_fire_each_slot_once(app, monkeypatch):
    with app.app_context():
        ids = [
            schedules.create_schedule(make_job(f"race-{i}"), kind="interval", interval_minutes=1).id
            for i in range(3)
        ]
        for schedule_id in ids:
            make_due(db.session.get(Schedule, schedule_id))
    now = utcnow()
    real_start_run = runs.start_run

    def slow_start_run(*args, **kwargs):  # hold the row lock while the other tick looks
        time.sleep(0.3)
        return real_start_run(*args, **kwargs)

    monkeypatch.setattr(runs, "start_run", slow_start_run)
    barrier = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def ticker() -> None:
        try:
            with app.app_context():
                barrier.wait(5)
                results.append(scheduler.tick(now))
                db.session.remove()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ticker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(results) == 2 and sum(map(len, results)) == 3
    with app.app_context():
        assert count(ScheduleFire) == 3
        assert count(JobRun) == 3
        for schedule_id in ids:
            assert len(fires_of(schedule_id)) == 1
            assert reload(schedule_id).next_fire_at > now
        drain(app)
        assert run_statuses() == {"COMPLETED_SUCCESS"}


def test_a_slot_already_claimed_is_not_fired_again(ctx):
    schedule = schedules.create_schedule(make_job(), kind="interval", interval_minutes=5)
    fire_at = make_due(schedule)
    db.session.add(ScheduleFire(schedule_id=schedule.id, fire_at=fire_at))
    db.session.commit()
    assert scheduler.tick() == []
    assert count(JobRun) == 0
    assert len(fires_of(schedule.id)) == 1
    assert reload(schedule.id).next_fire_at > utcnow()


def test_a_missed_hour_fires_once_on_catch_up(ctx):
    job = make_job()
    schedule = schedules.create_schedule(job, kind="interval", interval_minutes=5)
    schedule.created_at = utcnow() - timedelta(hours=3)
    db.session.commit()
    fire_at = make_due(schedule, ago=timedelta(minutes=60))
    now = utcnow()
    assert len(scheduler.tick(now)) == 1
    assert [f.fire_at for f in fires_of(schedule.id)] == [fire_at]
    assert count(JobRun) == 1
    schedule = reload(schedule.id)
    assert now < schedule.next_fire_at <= now + timedelta(minutes=5)
    grid = schedule.created_at.replace(second=0, microsecond=0)
    assert (schedule.next_fire_at - grid) % timedelta(minutes=5) == timedelta(0)
    drain(ctx)
    assert run_statuses() == {"COMPLETED_SUCCESS"}


def test_a_disabled_jobs_schedule_does_not_fire(ctx):
    job = make_job()
    schedule = schedules.create_schedule(job, kind="interval", interval_minutes=5)
    make_due(schedule)
    job.enabled = False
    db.session.commit()
    now = utcnow()
    assert scheduler.tick(now) == []
    assert count(JobRun) == 0 and count(ScheduleFire) == 0
    # the slot passed while the job was off: enabling it later starts no catch-up run
    assert reload(schedule.id).next_fire_at > now


def test_a_disabled_schedule_does_not_fire(ctx):
    schedule = schedules.create_schedule(make_job(), kind="interval", interval_minutes=5)
    make_due(schedule)
    schedule.enabled = False
    db.session.commit()
    assert scheduler.tick() == []
    assert count(JobRun) == 0 and count(ScheduleFire) == 0


def test_a_one_time_schedule_fires_then_disables_itself(ctx):
    at = utcnow() + timedelta(minutes=2)
    schedule = schedules.create_schedule(make_job(), kind="once", run_at=at)
    assert reload(schedule.id).next_fire_at == at
    assert scheduler.tick(at - timedelta(minutes=1)) == []
    (run_id,) = scheduler.tick(at + timedelta(seconds=30))
    schedule = reload(schedule.id)
    assert (schedule.enabled, schedule.next_fire_at, schedule.last_fire_at) == (False, None, at)
    assert [(f.fire_at, f.run_id) for f in fires_of(schedule.id)] == [(at, run_id)]
    assert scheduler.tick(at + timedelta(minutes=5)) == []
    assert count(JobRun) == 1
    drain(ctx)
    assert run_statuses() == {"COMPLETED_SUCCESS"}


def test_a_no_overlap_job_still_running_records_a_skipped_fire(ctx):
    job = make_job(no_overlap=True)
    busy = runs.start_run(job, triggered_by="test")
    schedule = schedules.create_schedule(job, kind="interval", interval_minutes=5)
    fire_at = make_due(schedule)
    now = utcnow()

    assert scheduler.tick(now) == []

    (fire,) = fires_of(schedule.id)
    assert (fire.fire_at, fire.run_id) == (fire_at, None)
    assert count(JobRun) == 1
    line = db.session.scalar(select(JobLog).where(JobLog.log_type == "scheduler"))
    assert (line.level, line.source, line.job_id) == ("warning", "worker.scheduler", job.id)
    assert f"already has run #{busy.id}" in line.message
    assert line.meta["schedule_id"] == schedule.id and line.meta["fire_id"] == fire.id
    schedule = reload(schedule.id)
    assert schedule.last_fire_at == fire_at and schedule.next_fire_at > now
    assert scheduler.tick(now) == [], "the skipped slot is not retried"
    drain(ctx)
    assert run_statuses() == {"COMPLETED_SUCCESS"}


def test_the_procrastinate_task_runs_the_tick(ctx):
    schedule = schedules.create_schedule(make_job(), kind="interval", interval_minutes=60)
    make_due(schedule)
    connection = db.session.connection().connection.driver_connection
    queue.defer_in_transaction(connection, scheduler.TASK_NAME, {"timestamp": int(time.time())})
    db.session.commit()
    drain(ctx)  # takes the tick, then the run it started
    drain(ctx)
    (fire,) = fires_of(schedule.id)
    run = db.session.get(JobRun, fire.run_id)
    assert run.status == "COMPLETED_SUCCESS"
    statuses = db.session.execute(
        text("SELECT status FROM procrastinate_jobs WHERE task_name = :name"),
        {"name": scheduler.TASK_NAME},
    ).scalars()
    assert set(statuses) == {"succeeded"}


# --------------------------------------------------------------- two real worker processes


@pytest.fixture
def two_workers(app, database_url, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        {
            "DATABASE_URL": database_url,
            "ROOKERY_INSTANCE": app.config["ROOKERY_INSTANCE"],
            "ROOKERY_JOBS_PATH": "",
            "ROOKERY_WORKER_GRACE_SECONDS": "5",
        }
    )
    started: list[tuple[subprocess.Popen, Path]] = []

    def start() -> list[subprocess.Popen]:
        for number in (1, 2):
            log_path = tmp_path / f"worker-{number}.log"
            with log_path.open("w") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "worker", "--concurrency", "2"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            started.append((process, log_path))
        return [p for p, _ in started]

    yield start
    for process, _ in started:
        process.send_signal(signal.SIGTERM)
    for process, _ in started:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {path.name}\n{path.read_text()[-3000:]}"
        for path in sorted(tmp_path.glob("worker-*.log"))
    )


def test_two_workers_fire_each_slot_exactly_once(ctx, two_workers, tmp_path):
    assert "app.engine.scheduler" in queue.queue_app.import_paths, (
        "app.engine.scheduler is not in app.engine.queue.queue_app.import_paths, so worker "
        "processes never register rookery.schedule_tick and no schedule fires: add it there"
    )
    ids = [
        schedules.create_schedule(make_job(f"e2e-{i}"), kind="interval", interval_minutes=1).id
        for i in range(2)
    ]
    for schedule_id in ids:
        make_due(db.session.get(Schedule, schedule_id), ago=timedelta(minutes=3))
    processes = two_workers()

    # Each worker's periodic deferrer defers the current minute's tick when it starts
    # (the database keeps one), then one per minute boundary.
    deadline = time.monotonic() + 75
    done = False
    while time.monotonic() < deadline and not done:
        time.sleep(0.5)
        db.session.expire_all()
        fired = db.session.execute(
            select(ScheduleFire.schedule_id, JobRun.status).join(
                JobRun, JobRun.id == ScheduleFire.run_id
            )
        ).all()
        done = {s for s, status in fired if status == "COMPLETED_SUCCESS"} == set(ids)
        assert all(p.poll() is None for p in processes), worker_logs(tmp_path)
    assert done, f"no tick fired both schedules within 75 s\n{worker_logs(tmp_path)}"
    time.sleep(2)  # room for a duplicate, if there were one

    db.session.expire_all()
    per_slot = db.session.execute(
        select(ScheduleFire.schedule_id, ScheduleFire.fire_at, func.count()).group_by(
            ScheduleFire.schedule_id, ScheduleFire.fire_at
        )
    ).all()
    assert per_slot and all(n == 1 for _, _, n in per_slot)
    fires = db.session.scalars(select(ScheduleFire)).all()
    assert all(f.run_id is not None for f in fires)
    scheduled_runs = db.session.scalars(
        select(JobRun).where(JobRun.triggered_by.like("schedule:%"))
    ).all()
    assert len(scheduled_runs) == len(fires) >= 2
    assert sorted(r.id for r in scheduled_runs) == sorted(f.run_id for f in fires)
    assert {f.schedule_id for f in fires} == set(ids)
