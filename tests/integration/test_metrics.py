"""/metrics on a real PostgreSQL: Prometheus text that parses, with the figures of the rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.extensions import db
from app.models import DeviceResult, JobRun, RunStatus, utcnow
from app.services import credentials, runs
from tests.conftest import make_config
from tests.integration.helpers import add_queue_job, cancel_active_runs, drain, make_job, reload


def add_run(status: RunStatus, *, job_type: str = "backup", duration_ms: int | None = None) -> int:
    now = utcnow()
    # a RUNNING run's attempt holds its queue entry, as a worker's does
    held = add_queue_job("doing", [("started", now)]) if status is RunStatus.RUNNING else None
    run = JobRun(
        job_name=job_type,
        job_type=job_type,
        status=status.value,
        signal_id="sig",
        finished_at=now if status.is_final else None,
        duration_ms=duration_ms,
        procrastinate_job_id=held,
    )
    db.session.add(run)
    db.session.flush()
    return run.id


def add_result(run_id: int, name: str, status: str) -> None:
    db.session.add(DeviceResult(run_id=run_id, device_name=name, status=status))


def scrape(client, **headers) -> dict:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(answer.get_data(as_text=True))}
    return families


def samples(family, suffix: str = "") -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


def test_metrics_report_the_database(ctx, client):
    # runs: 3 backups succeeded (0.2 s, 3 s, 45 s), one failed (no duration), one running
    for ms in (200, 3000, 45000):
        add_run(RunStatus.COMPLETED_SUCCESS, duration_ms=ms)
    failed = add_run(RunStatus.FAILED_UNEXPECTED)
    add_run(RunStatus.RUNNING, duration_ms=None)
    add_run(RunStatus.TIMEOUT, job_type="ping", duration_ms=700)
    add_result(failed, "r1", "success")
    add_result(failed, "r2", "unreachable")
    add_result(failed, "r3", "unreachable")
    # queue: two due normal-priority entries, one high, one not yet due, one done
    now = utcnow()
    add_queue_job("todo", [("deferred", now)], priority=5)
    add_queue_job("todo", [("deferred", now)], priority=5)
    add_queue_job("todo", [("deferred", now)], priority=10)
    add_queue_job("todo", [("deferred", now)], priority=1, scheduled_at=now + timedelta(hours=1))
    add_queue_job("succeeded", [("deferred", now)], priority=1)
    db.session.commit()
    first = credentials.create_credential("c1", "netops", "pw-one", actor="test")
    second = credentials.create_credential("c2", "netops", "pw-two", actor="test")
    for credential, ok, bad in ((first, 4, 1), (second, 2, 3)):
        for _ in range(ok):
            credentials.record_use(credential.id, success=True)
        for _ in range(bad):
            credentials.record_use(credential.id, success=False)

    families = scrape(client)

    assert samples(families["rookery_runs"]) == {
        (("job_type", "backup"), ("status", "COMPLETED_SUCCESS")): 3,
        (("job_type", "backup"), ("status", "FAILED_UNEXPECTED")): 1,
        (("job_type", "backup"), ("status", "RUNNING")): 1,
        (("job_type", "ping"), ("status", "TIMEOUT")): 1,
    }
    histogram = families["rookery_run_duration_seconds"]
    assert histogram.type == "histogram"
    buckets = samples(histogram, "_bucket")
    backup = {dict(k)["le"]: v for k, v in buckets.items() if dict(k)["job_type"] == "backup"}
    assert backup["0.5"] == 1
    assert backup["1.0"] == 1
    assert backup["5.0"] == 2
    assert backup["30.0"] == 2
    assert backup["60.0"] == 3
    assert backup["+Inf"] == 3
    assert samples(histogram, "_count")[(("job_type", "backup"),)] == 3
    assert samples(histogram, "_sum")[(("job_type", "backup"),)] == pytest.approx(48.2)
    assert samples(histogram, "_count")[(("job_type", "ping"),)] == 1

    assert samples(families["rookery_queue_depth"]) == {
        (("priority", "10"),): 1,
        (("priority", "5"),): 2,
    }
    assert samples(families["rookery_queue_lag_seconds"])[()] >= 0
    assert samples(families["rookery_workers_alive"]) == {(): 0}
    assert samples(families["rookery_device_results"]) == {
        (("status", "success"),): 1,
        (("status", "unreachable"),): 2,
    }
    assert families["rookery_credential_failures"].type == "counter"
    assert samples(families["rookery_credential_failures"], "_total") == {(): 4}
    assert samples(families["rookery_credential_successes"], "_total") == {(): 6}
    cancel_active_runs()


def test_metrics_follow_a_real_run(ctx, client):
    before = scrape(client)
    assert samples(before["rookery_runs"]) == {}
    run = runs.start_run(make_job(params={"mode": "fail"}), triggered_by="test")
    queued = scrape(client)
    assert samples(queued["rookery_runs"]) == {(("job_type", "writer"), ("status", "QUEUED")): 1}
    assert sum(samples(queued["rookery_queue_depth"]).values()) == 1
    drain(ctx)
    assert reload(run.id).status == "COMPLETED_FAILURE"
    done = scrape(client)
    assert samples(done["rookery_runs"]) == {
        (("job_type", "writer"), ("status", "COMPLETED_FAILURE")): 1
    }
    assert samples(done["rookery_run_duration_seconds"], "_count") == {(("job_type", "writer"),): 1}
    assert samples(done["rookery_queue_depth"]) == {}


def test_workers_alive_counts_heartbeats(ctx, client):
    db.session.execute(
        text(
            "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now()), (now()),"
            " (now() - interval '10 minutes')"
        )
    )
    db.session.commit()
    assert samples(scrape(client)["rookery_workers_alive"]) == {(): 2}


@pytest.fixture
def token_app(database_url, tmp_path, app_factory):
    return app_factory(
        make_config(database_url, tmp_path / "instance", ROOKERY_METRICS_TOKEN="scrape-me-42")
    )


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", "Basic c2NyYXBlLW1lLTQy", "Bearer scrape-me-4", "scrape-me-42"],
)
def test_token_is_required_when_set(token_app, header):
    client = token_app.test_client()
    answer = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert "rookery_runs" not in answer.get_data(as_text=True)


def test_token_opens_metrics(token_app):
    families = scrape(token_app.test_client(), Authorization="Bearer scrape-me-42")
    assert "rookery_runs" in families


def test_metrics_are_open_without_a_token(client):
    assert "rookery_workers_alive" in scrape(client)
