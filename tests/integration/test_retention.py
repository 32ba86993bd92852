"""Retention on a real PostgreSQL: what is older than each limit goes, nothing else."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, text

from app.engine import queue, retention
from app.extensions import db
from app.models import (
    AuditEntry,
    DeviceResult,
    Event,
    Job,
    JobLog,
    JobRun,
    LoginFailure,
    MaintenanceState,
    RunStatus,
    Schedule,
    ScheduleFire,
    utcnow,
)
from tests.conftest import make_config
from tests.integration.helpers import add_queue_job, cancel_active_runs

RUNS_DAYS = 10
LOGS_DAYS = 5
QUEUE_DAYS = 3
EVENTS_DAYS = 20
AUDIT_DAYS = 40
LOGIN_WINDOW = 600


@pytest.fixture
def app(database_url, tmp_path, app_factory):
    return app_factory(
        make_config(
            database_url,
            tmp_path / "instance",
            ROOKERY_RETENTION_RUNS_DAYS=RUNS_DAYS,
            ROOKERY_RETENTION_LOGS_DAYS=LOGS_DAYS,
            ROOKERY_RETENTION_QUEUE_DAYS=QUEUE_DAYS,
            ROOKERY_RETENTION_EVENTS_DAYS=EVENTS_DAYS,
            ROOKERY_RETENTION_AUDIT_DAYS=AUDIT_DAYS,
            ROOKERY_LOGIN_WINDOW_SECONDS=LOGIN_WINDOW,
            ROOKERY_CLEANUP_INTERVAL_MINUTES=60,
        )
    )


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def days(n: float) -> timedelta:
    return timedelta(days=n)


def add_run(now, status: RunStatus, *, created=None, finished=None, queue_job=None) -> int:
    run = JobRun(
        job_name="j",
        job_type="t",
        status=status.value,
        signal_id="sig",
        created_at=created or now,
        finished_at=finished,
        procrastinate_job_id=queue_job,
    )
    db.session.add(run)
    db.session.flush()
    return run.id


def exists(model, id_) -> bool:
    db.session.expire_all()
    return db.session.get(model, id_) is not None


def queue_job_ids() -> set[int]:
    return set(db.session.scalars(text("SELECT id FROM procrastinate_jobs")))


def test_foreign_keys_are_what_retention_relies_on(ctx):
    rows = db.session.execute(
        text(
            "SELECT conrelid::regclass::text AS child, confrelid::regclass::text AS parent,"
            " confdeltype FROM pg_constraint WHERE contype = 'f'"
            " AND confrelid::regclass::text IN ('job_runs', 'procrastinate_jobs')"
        )
    ).all()
    rules = {(r.child, r.parent): r.confdeltype for r in rows}
    assert rules[("device_results", "job_runs")] == "c"
    assert rules[("job_logs", "job_runs")] == "c"
    assert rules[("events", "job_runs")] == "n"
    assert rules[("schedule_fires", "job_runs")] == "n"
    assert rules[("procrastinate_events", "procrastinate_jobs")] == "c"
    # no ON DELETE here: procrastinate's BEFORE DELETE trigger unlinks the row instead
    assert rules[("procrastinate_periodic_defers", "procrastinate_jobs")] == "a"


def test_cleanup_deletes_exactly_what_is_older_than_each_limit(ctx):
    now = utcnow()
    inside, outside = 1, 1  # a day inside / outside each limit

    # runs
    old_done = add_run(now, RunStatus.COMPLETED_SUCCESS, finished=now - days(RUNS_DAYS + outside))
    kept_done = add_run(now, RunStatus.COMPLETED_FAILURE, finished=now - days(RUNS_DAYS - inside))
    old_never_started = add_run(
        now, RunStatus.CANCELLED, created=now - days(RUNS_DAYS + outside), finished=None
    )
    long_but_recent = add_run(
        now, RunStatus.TIMEOUT, created=now - days(100), finished=now - days(RUNS_DAYS - inside)
    )
    active = {
        status: add_run(now, status, created=now - days(400))
        for status in (
            RunStatus.PENDING,
            RunStatus.QUEUED,
            RunStatus.SCHEDULED,
            RunStatus.WAITING,
        )
    }
    # a RUNNING run's attempt holds its queue entry, as a worker's does
    held = add_queue_job("doing", [("started", now - days(400))])
    active[RunStatus.RUNNING] = add_run(
        now, RunStatus.RUNNING, created=now - days(400), queue_job=held
    )
    results = {
        run_id: DeviceResult(run_id=run_id, device_name=f"r{run_id}", status="success")
        for run_id in (old_done, kept_done)
    }
    db.session.add_all(results.values())

    # log lines: one of the deleted run (recent, goes with its run), loose ones by age
    run_line = JobLog(level="info", log_type="job", source="t", message="x", run_id=old_done)
    old_line = JobLog(
        level="info", log_type="system", source="t", message="old", at=now - days(LOGS_DAYS + 1)
    )
    kept_line = JobLog(
        level="info", log_type="system", source="t", message="kept", at=now - days(LOGS_DAYS - 1)
    )
    kept_run_line = JobLog(
        level="info",
        log_type="job",
        source="t",
        message="kept run",
        run_id=kept_done,
        at=now - days(LOGS_DAYS - 1),
    )
    # events: the deleted run's stays (run_id NULL) until the events limit
    run_event = Event(type="job.completed", run_id=old_done, at=now - days(RUNS_DAYS + 1))
    old_event = Event(type="job.completed", at=now - days(EVENTS_DAYS + 1))
    kept_event = Event(type="job.completed", at=now - days(EVENTS_DAYS - 1))
    old_audit = AuditEntry(
        actor="a", action="update", object_type="job", at=now - days(AUDIT_DAYS + 1)
    )
    kept_audit = AuditEntry(
        actor="a", action="update", object_type="job", at=now - days(AUDIT_DAYS - 1)
    )
    old_failure = LoginFailure(
        username="u", address="a", at=now - timedelta(seconds=LOGIN_WINDOW + 100)
    )
    kept_failure = LoginFailure(
        username="u", address="a", at=now - timedelta(seconds=LOGIN_WINDOW - 100)
    )
    # schedule fires
    job = Job(name="nightly", job_type="t")
    db.session.add(job)
    db.session.flush()
    schedule = Schedule(job_id=job.id, kind="interval", interval_minutes=5)
    db.session.add(schedule)
    db.session.flush()
    old_fire = ScheduleFire(
        schedule_id=schedule.id,
        fire_at=now - days(RUNS_DAYS + 1),
        run_id=old_done,
        created_at=now - days(RUNS_DAYS + 1),
    )
    old_fire_of_active_run = ScheduleFire(
        schedule_id=schedule.id,
        fire_at=now - days(RUNS_DAYS + 2),
        run_id=active[RunStatus.WAITING],
        created_at=now - days(RUNS_DAYS + 2),
    )
    kept_fire = ScheduleFire(
        schedule_id=schedule.id,
        fire_at=now - days(RUNS_DAYS - 1),
        created_at=now - days(RUNS_DAYS - 1),
    )
    db.session.add_all(
        [
            run_line,
            old_line,
            kept_line,
            kept_run_line,
            run_event,
            old_event,
            kept_event,
            old_audit,
            kept_audit,
            old_failure,
            kept_failure,
            old_fire,
            old_fire_of_active_run,
            kept_fire,
        ]
    )

    # queue entries, aged by their latest event
    q_old = now - days(QUEUE_DAYS + 1)
    q_new = now - days(QUEUE_DAYS - 1)
    gone_jobs = {
        add_queue_job("succeeded", [("deferred", q_old - days(1)), ("succeeded", q_old)]),
        add_queue_job("failed", [("failed", q_old)]),
        add_queue_job("cancelled", [("cancelled", q_old)]),
        add_queue_job("aborted", [("aborted", q_old)]),
    }
    periodic_job = add_queue_job("succeeded", [("succeeded", q_old)])
    gone_jobs.add(periodic_job)
    db.session.execute(
        text(
            "INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id)"
            " VALUES ('rookery.retention_tick', 1, :id)"
        ),
        {"id": periodic_job},
    )
    kept_jobs = {
        # an old event, but the latest one is inside the limit
        add_queue_job(
            "failed", [("failed", now - days(30)), ("retried", q_new), ("failed", q_new)]
        ),
        add_queue_job("todo", [("deferred", now - days(100))]),
        add_queue_job("doing", [("started", now - days(100))]),
        # no events at all: its age is unknown, so it stays (as procrastinate does)
        add_queue_job("succeeded", []),
    }
    tied = add_queue_job("failed", [("failed", q_old)])
    kept_jobs.update({tied, held})
    add_run(now, RunStatus.RUNNING, created=now - days(1), queue_job=tied)
    db.session.commit()
    ids = {
        "run_line": run_line.id,
        "old_line": old_line.id,
        "kept_line": kept_line.id,
        "kept_run_line": kept_run_line.id,
        "run_event": run_event.id,
        "old_event": old_event.id,
        "kept_event": kept_event.id,
        "old_audit": old_audit.id,
        "kept_audit": kept_audit.id,
        "old_failure": old_failure.id,
        "kept_failure": kept_failure.id,
        "old_fire": old_fire.id,
        "old_fire_of_active_run": old_fire_of_active_run.id,
        "kept_fire": kept_fire.id,
        "results": {run_id: r.id for run_id, r in results.items()},
    }

    counts = retention.cleanup(now=now)

    assert counts == {
        "runs": 2,
        "schedule_fires": 1,
        "job_logs": 1,  # the loose old line; the run's line went by cascade, uncounted
        "queue_jobs": 5,
        "events": 1,
        "audit": 1,
        "login_failures": 1,
    }
    assert not exists(JobRun, old_done)
    assert not exists(JobRun, old_never_started)
    assert exists(JobRun, kept_done)
    assert exists(JobRun, long_but_recent)
    assert all(exists(JobRun, run_id) for run_id in active.values())
    assert not exists(DeviceResult, ids["results"][old_done])
    assert exists(DeviceResult, ids["results"][kept_done])
    assert not exists(JobLog, ids["run_line"])
    assert not exists(JobLog, ids["old_line"])
    assert exists(JobLog, ids["kept_line"])
    assert exists(JobLog, ids["kept_run_line"])
    survivor = db.session.get(Event, ids["run_event"])
    assert survivor is not None and survivor.run_id is None
    assert not exists(Event, ids["old_event"])
    assert exists(Event, ids["kept_event"])
    assert not exists(AuditEntry, ids["old_audit"])
    assert exists(AuditEntry, ids["kept_audit"])
    assert not exists(LoginFailure, ids["old_failure"])
    assert exists(LoginFailure, ids["kept_failure"])
    assert not exists(ScheduleFire, ids["old_fire"])
    assert exists(ScheduleFire, ids["old_fire_of_active_run"])
    assert exists(ScheduleFire, ids["kept_fire"])
    remaining = queue_job_ids()
    assert remaining.isdisjoint(gone_jobs)
    assert kept_jobs <= remaining
    orphans = db.session.scalar(
        text(
            "SELECT count(*) FROM procrastinate_events e WHERE NOT EXISTS"
            " (SELECT 1 FROM procrastinate_jobs j WHERE j.id = e.job_id)"
        )
    )
    assert orphans == 0
    defer_link = db.session.scalar(text("SELECT job_id FROM procrastinate_periodic_defers"))
    assert defer_link is None

    line = db.session.scalars(
        select(JobLog).where(JobLog.source == "rookery.retention").order_by(JobLog.id.desc())
    ).first()
    assert line is not None and line.level == "info"
    assert line.meta == counts
    assert "runs 2" in line.message

    # Nothing left to do: a second pass deletes nothing.
    again = retention.cleanup(now=now)
    assert set(again.values()) == {0}
    cancel_active_runs()


def test_events_outlive_their_run_until_their_own_limit(ctx):
    now = utcnow()
    run_id = add_run(now, RunStatus.COMPLETED_SUCCESS, finished=now - days(RUNS_DAYS + 1))
    ev = Event(type="job.completed", run_id=run_id, at=now - days(RUNS_DAYS + 1))
    db.session.add(ev)
    db.session.commit()
    event_id = ev.id

    retention.cleanup(now=now)
    assert not exists(JobRun, run_id)
    assert db.session.get(Event, event_id).run_id is None

    # the event is RUNS_DAYS + 1 days old: it goes once it passes EVENTS_DAYS
    retention.cleanup(now=now + days(EVENTS_DAYS - RUNS_DAYS - 2))
    assert exists(Event, event_id)
    retention.cleanup(now=now + days(EVENTS_DAYS - RUNS_DAYS + 1))
    assert not exists(Event, event_id)


def test_cleanup_works_in_batches_committing_each(ctx, app):
    now = utcnow()
    for n in range(5):
        db.session.add(
            AuditEntry(actor="a", action="x", object_type="job", at=now - days(AUDIT_DAYS + 1 + n))
        )
    for _ in range(4):
        db.session.add(
            JobLog(level="info", log_type="system", source="t", message="m", at=now - days(99))
        )
    for _ in range(7):
        add_run(now, RunStatus.COMPLETED_SUCCESS, finished=now - days(RUNS_DAYS + 1))
    for _ in range(3):
        add_queue_job("succeeded", [("succeeded", now - days(QUEUE_DAYS + 1))])
    kept_audit = AuditEntry(actor="a", action="x", object_type="job", at=now)
    db.session.add(kept_audit)
    db.session.commit()

    statements: list[str] = []
    commits: list[int] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("DELETE FROM"):
            statements.append(statement.split()[2])

    def on_commit(conn):
        commits.append(1)

    event.listen(db.engine, "before_cursor_execute", on_execute)
    event.listen(db.engine, "commit", on_commit)
    try:
        counts = retention.cleanup(now=now, batch_size=2)
    finally:
        event.remove(db.engine, "before_cursor_execute", on_execute)
        event.remove(db.engine, "commit", on_commit)

    assert counts["audit"] == 5
    assert counts["job_logs"] == 4
    assert counts["runs"] == 7
    assert counts["queue_jobs"] == 3
    # 5 rows: 2 + 2 + 1; 4 rows: 2 + 2 + an empty batch that ends the loop; 7: 4 batches
    assert statements.count("audit_log") == 3
    assert statements.count("job_logs") == 3
    assert statements.count("job_runs") == 4
    assert statements.count("procrastinate_jobs") == 2
    # every DELETE batch is its own transaction (the final log line commits once more)
    assert len(commits) == len(statements) + 1
    assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == 1
    assert db.session.scalar(select(func.count()).select_from(JobRun)) == 0


def test_cleanup_refuses_a_zero_batch(ctx):
    with pytest.raises(ValueError, match="batch_size"):
        retention.cleanup(batch_size=0)


def test_maintenance_due_claims_once_across_concurrent_callers(ctx, app):
    now = utcnow()
    interval = timedelta(minutes=60)
    barrier = threading.Barrier(2)
    answers: list[bool] = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=10)
                answers.append(retention.maintenance_due("retention", interval, now))
                db.session.remove()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert sorted(answers) == [False, True]

    # Again: not before the interval has passed, then exactly once.
    assert retention.maintenance_due("retention", interval, now + timedelta(minutes=59)) is False
    assert retention.maintenance_due("retention", interval, now + timedelta(minutes=60)) is True
    assert retention.maintenance_due("retention", interval, now + timedelta(minutes=61)) is False
    # another chore has its own clock
    assert retention.maintenance_due("stalled-runs", interval, now) is True
    state = db.session.get(MaintenanceState, "retention")
    assert state.last_run_at == now + timedelta(minutes=60)


def test_retention_tick_is_a_periodic_task_with_a_queueing_lock():
    task = queue.queue_app.tasks["rookery.retention_tick"]
    assert task.queueing_lock == "rookery.retention_tick"
    periodic = [
        p for p in queue.queue_app.periodic_registry.periodic_tasks.values() if p.task is task
    ]
    assert len(periodic) == 1
    assert periodic[0].cron == "* * * * *"
    assert periodic[0].periodic_id == "retention-tick"


def test_retention_tick_runs_cleanup_once_per_interval_in_a_worker(ctx, app, monkeypatch):
    # Only the ticks deferred here: the worker's own periodic deferrer stays quiet.
    monkeypatch.setattr(queue.queue_app.periodic_registry, "periodic_tasks", {})
    now = utcnow()
    old = AuditEntry(actor="a", action="x", object_type="job", at=now - days(AUDIT_DAYS + 1))
    db.session.add(old)
    db.session.commit()
    old_id = old.id

    def tick() -> None:
        connection = db.session.connection().connection.driver_connection
        queue.defer_in_transaction(
            connection,
            "rookery.retention_tick",
            {"timestamp": int(now.timestamp())},
            queueing_lock="rookery.retention_tick",
        )
        db.session.commit()
        queue.bind(app)
        queue.queue_app.run_worker(
            wait=False, concurrency=1, listen_notify=False, install_signal_handlers=False
        )

    tick()
    assert not exists(AuditEntry, old_id)
    state = db.session.get(MaintenanceState, "retention")
    assert state.data["deleted"]["audit"] == 1

    second = AuditEntry(actor="a", action="x", object_type="job", at=now - days(AUDIT_DAYS + 1))
    db.session.add(second)
    db.session.commit()
    tick()  # within the interval: claims nothing, deletes nothing
    assert exists(AuditEntry, second.id)
    statuses = db.session.scalars(
        text(
            "SELECT status::text FROM procrastinate_jobs"
            " WHERE task_name = 'rookery.retention_tick' ORDER BY id"
        )
    ).all()
    assert statuses == ["succeeded", "succeeded"]
