"""Statistics on a real PostgreSQL: exact counts, percentiles and queue figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.extensions import db
from app.models import DeviceResult, JobRun, RunStatus, utcnow
from app.services import stats
from tests.integration.helpers import add_queue_job, cancel_active_runs


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def add_run(
    status: RunStatus,
    *,
    job_type: str = "backup",
    finished=None,
    duration_ms=None,
    attempt: int = 1,
    created=None,
    queued_at=None,
) -> int:
    # a RUNNING run's attempt holds its queue entry, as a worker's does
    held = add_queue_job("doing", [("started", utcnow())]) if status is RunStatus.RUNNING else None
    run = JobRun(
        job_name=job_type,
        job_type=job_type,
        status=status.value,
        signal_id="sig",
        finished_at=finished,
        duration_ms=duration_ms,
        attempt=attempt,
        max_attempts=max(attempt, 1),
        created_at=created or utcnow(),
        queued_at=queued_at,
        procrastinate_job_id=held,
    )
    db.session.add(run)
    db.session.flush()
    return run.id


def secs(n: float) -> timedelta:
    return timedelta(seconds=n)


def test_statistics_on_a_known_dataset(ctx):
    now = utcnow()
    since = now - timedelta(days=1)
    recent = now - timedelta(hours=2)

    # finished inside the window
    for ms in (100, 200, 300):
        add_run(RunStatus.COMPLETED_SUCCESS, finished=recent, duration_ms=ms)
    # succeeded on its third attempt: one run, one outcome
    add_run(RunStatus.COMPLETED_SUCCESS, finished=recent, duration_ms=400, attempt=3)
    add_run(RunStatus.FAILED_UNEXPECTED, finished=recent, duration_ms=1000, attempt=2)
    add_run(RunStatus.COMPLETED_PARTIAL_FAILURE, job_type="ping", finished=recent, duration_ms=50)
    add_run(RunStatus.CANCELLED, job_type="ping", finished=recent)  # never started
    # outside the window, or not final
    add_run(RunStatus.COMPLETED_SUCCESS, finished=now - timedelta(days=2), duration_ms=99999)
    add_run(RunStatus.COMPLETED_FAILURE, finished=None, duration_ms=77777)
    # an attempt failed in the window, the next one is scheduled: not an outcome yet
    add_run(RunStatus.SCHEDULED, finished=recent, duration_ms=88888, attempt=1)
    add_run(RunStatus.RUNNING)
    add_run(RunStatus.RUNNING)
    add_run(RunStatus.WAITING)
    oldest_queued = add_run(RunStatus.QUEUED, queued_at=now - secs(600))
    add_run(RunStatus.QUEUED, queued_at=now - secs(60))

    # queue: due todo jobs by priority, and when each became due
    add_queue_job("todo", [("deferred", now - secs(120))], priority=10)
    add_queue_job("todo", [("deferred", now - secs(60))], priority=5)
    # deferred long ago for a time that came 30 s ago: due for 30 s, not 600
    add_queue_job(
        "todo",
        [("deferred", now - secs(600)), ("scheduled", now - secs(30))],
        priority=5,
        scheduled_at=now - secs(30),
    )
    # back in todo for a retry 90 s ago, due 80 s ago
    add_queue_job(
        "todo",
        [
            ("deferred", now - secs(1000)),
            ("started", now - secs(900)),
            ("deferred_for_retry", now - secs(90)),
            ("scheduled", now - secs(80)),
        ],
        priority=1,
        scheduled_at=now - secs(80),
    )
    # not due, not todo
    add_queue_job(
        "todo", [("deferred", now - secs(5000))], priority=10, scheduled_at=now + secs(60)
    )
    add_queue_job("doing", [("deferred", now - secs(5000))], priority=10)
    add_queue_job("succeeded", [("succeeded", now - secs(5000))], priority=10)

    db.session.execute(
        text(
            "INSERT INTO procrastinate_workers (last_heartbeat)"
            " VALUES (now()), (now() - interval '10 seconds'), (now() - interval '2 minutes')"
        )
    )
    db.session.commit()

    report = stats.statistics(since=since, now=now)

    assert report["runs"] == {
        "by_status": {
            "CANCELLED": 1,
            "COMPLETED_PARTIAL_FAILURE": 1,
            "COMPLETED_SUCCESS": 4,
            "FAILED_UNEXPECTED": 1,
        },
        "finished": 7,
        "success_rate": pytest.approx(4 / 7),
    }
    # backup: 100, 200, 300, 400, 1000 -> p50 300; p95 = 400 + 0.8 * (1000 - 400)
    assert report["durations"] == {
        "backup": {"runs": 5, "p50_ms": 300.0, "p95_ms": 880.0},
        "ping": {"runs": 1, "p50_ms": 50.0, "p95_ms": 50.0},
    }
    assert report["now_running"] == 2
    assert report["now_queued"] == 2
    assert report["now_scheduled"] == 1
    assert report["now_waiting"] == 1
    assert report["oldest_queued_run"]["id"] == oldest_queued
    assert report["oldest_queued_run"]["age_seconds"] == pytest.approx(600, abs=0.01)
    assert report["queue"]["depth"] == 4
    assert report["queue"]["by_priority"] == [
        {"priority": 10, "jobs": 1},
        {"priority": 5, "jobs": 2},
        {"priority": 1, "jobs": 1},
    ]
    assert report["queue"]["lag_seconds"] == pytest.approx(120, abs=0.01)
    assert report["workers"]["alive"] == 2
    assert len(report["workers"]["workers"]) == 2
    cancel_active_runs()


def test_statistics_window_has_an_end(ctx):
    now = utcnow()
    add_run(RunStatus.COMPLETED_SUCCESS, finished=now - timedelta(hours=5), duration_ms=10)
    add_run(RunStatus.COMPLETED_FAILURE, finished=now - timedelta(hours=1), duration_ms=20)
    db.session.commit()

    report = stats.statistics(since=now - timedelta(hours=6), until=now - timedelta(hours=2))
    assert report["runs"]["by_status"] == {"COMPLETED_SUCCESS": 1}
    assert report["runs"]["success_rate"] == 1.0
    assert report["durations"]["backup"]["p50_ms"] == 10.0


def test_statistics_when_nothing_happened(ctx):
    report = stats.statistics(since=utcnow() - timedelta(days=1))
    assert report["runs"] == {"by_status": {}, "finished": 0, "success_rate": None}
    assert report["durations"] == {}
    assert report["oldest_queued_run"] is None
    assert report["queue"] == {
        "depth": 0,
        "by_priority": [],
        "lag_seconds": 0.0,
        "oldest_job_id": None,
    }
    assert report["workers"] == {"alive": 0, "concurrency": 0, "workers": []}


def test_runs_per_day_fills_every_day(ctx):
    now = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)
    add_run(RunStatus.COMPLETED_SUCCESS, finished=datetime(2030, 1, 10, 0, 5, tzinfo=UTC))
    add_run(RunStatus.COMPLETED_SUCCESS, finished=datetime(2030, 1, 10, 11, 0, tzinfo=UTC))
    add_run(RunStatus.TIMEOUT, finished=datetime(2030, 1, 10, 9, 0, tzinfo=UTC))
    add_run(RunStatus.COMPLETED_PARTIAL_FAILURE, finished=datetime(2030, 1, 8, 23, 59, tzinfo=UTC))
    add_run(RunStatus.CANCELLED, finished=datetime(2030, 1, 8, 1, 0, tzinfo=UTC))
    add_run(RunStatus.COMPLETED_NO_DEVICES, finished=datetime(2030, 1, 8, 2, 0, tzinfo=UTC))
    add_run(RunStatus.COMPLETED_SUCCESS, finished=datetime(2030, 1, 7, 23, 59, tzinfo=UTC))
    add_run(RunStatus.RUNNING, finished=datetime(2030, 1, 10, 1, 0, tzinfo=UTC))
    db.session.commit()

    days = stats.runs_per_day(3, now=now)

    assert [d["date"] for d in days] == ["2030-01-08", "2030-01-09", "2030-01-10"]
    assert days[0] | {"by_status": None} == {
        "date": "2030-01-08",
        "total": 3,
        "success": 0,
        "partial": 1,
        "failure": 0,
        "cancelled": 1,
        "other": 1,
        "by_status": None,
    }
    assert days[1]["total"] == 0 and days[1]["by_status"] == {}
    assert days[2]["total"] == 3
    assert days[2]["success"] == 2 and days[2]["failure"] == 1
    assert days[2]["by_status"] == {"COMPLETED_SUCCESS": 2, "TIMEOUT": 1}
    cancel_active_runs()


def test_failing_devices_ranks_by_failures(ctx):
    now = utcnow()
    run = add_run(RunStatus.COMPLETED_PARTIAL_FAILURE, finished=now)
    other = add_run(RunStatus.COMPLETED_FAILURE, finished=now)
    third = add_run(RunStatus.COMPLETED_FAILURE, finished=now)
    old = add_run(RunStatus.COMPLETED_FAILURE, finished=now - timedelta(days=9))

    def result(run_id, name, status, at=now):
        db.session.add(
            DeviceResult(
                run_id=run_id, device_name=name, status=status, started_at=at, finished_at=at
            )
        )

    result(run, "r1", "unreachable")
    result(other, "r1", "auth_failed")
    result(third, "r1", "failed")
    result(run, "r2", "success")
    result(other, "r2", "no_credentials")
    result(third, "r2", "cancelled")
    result(run, "r3", "timeout")
    result(old, "r3", "failed", at=now - timedelta(days=9))
    result(old, "r4", "failed", at=now - timedelta(days=9))
    db.session.commit()

    ranked = stats.failing_devices(now - timedelta(days=1))
    assert [(d["device_name"], d["failures"]) for d in ranked] == [
        ("r1", 3),
        ("r2", 1),
        ("r3", 1),
    ]
    assert [d["device_name"] for d in stats.failing_devices(now - timedelta(days=1), limit=1)] == [
        "r1"
    ]
