"""The API's jobs, runs, events and logs, with the shapes scripts rely on."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from app.extensions import db
from app.models import Job, Schedule
from tests.integration.helpers import drain
from tests.integration.test_api_support import Api, error, make_tokens, ok

SECRET = "s3cret-param-value"


@pytest.fixture
def api(app, client) -> Api:
    return Api(client=client, tokens=make_tokens(app))


def add_device(api: Api, name: str, tags: list[str] | None = None) -> int:
    body = {"name": name, "host": "192.0.2.10", "platform": "cisco_ios", "tags": tags or []}
    return ok(api.post("/api/v1/devices", json=body), 201)["id"]


def results(api: Api, run_id: int, **kwargs) -> list[dict]:
    """Every device result of a run, page after page."""
    found: list[dict] = []
    path = f"/api/v1/runs/{run_id}/results?limit=1"
    page = ok(api.get(path, **kwargs))
    found += page["items"]
    while page["next"] is not None:
        page = ok(api.get(f"{path}&cursor={page['next']}", **kwargs))
        found += page["items"]
    return found


def writer_job(api: Api, name: str = "w", mode: str = "ok", **extra) -> dict:
    body = {
        "name": name,
        "job_type": "writer",
        "params": {"tag": name, "mode": mode, "token": SECRET},
        "allow_overlap": True,
        **extra,
    }
    return ok(api.post("/api/v1/jobs", json=body, as_="operator"), 201)


def test_job_types_lists_the_registry(api: Api) -> None:
    body = ok(api.get("/api/v1/job-types", as_="viewer"))
    assert body["skipped"] == []
    by_type = {t["job_type"]: t for t in body["job_types"]}
    assert {"writer", "devjob", "config_backup", "noop"} <= set(by_type)
    writer = by_type["writer"]
    assert writer["label"] and writer["targets"] == "none"
    assert [p["name"] for p in writer["params"]] == ["tag", "mode", "token"]
    assert writer["params"][2]["secret"] is True


def test_job_types_report_skipped_modules(app, api: Api, tmp_path) -> None:
    broken = tmp_path / "jobs" / "broken.py"
    broken.write_text("JOB_META = {'job_type': 'broken'}\n")  # no run()
    from app import registry

    with app.app_context():
        registry.init_app(app)
    skipped = ok(api.get("/api/v1/job-types"))["skipped"]
    assert [s["path"].endswith("broken.py") for s in skipped] == [True]
    assert skipped[0]["reason"]


def test_create_a_job_with_every_field(api: Api, app) -> None:
    r1 = add_device(api, "r1")
    add_device(api, "r2")
    ok(
        api.post(
            "/api/v1/credentials",
            json={"name": "lab", "username": "u", "password": "p", "priority": 1, "tags": []},
        ),
        201,
    )
    first = writer_job(api, "first")
    body = {
        "name": "nightly",
        "job_type": "devjob",
        "params": {},
        "targets": {"tags": ["core"], "devices": ["r2", r1]},
        "priority": "high",
        "max_retries": 3,
        "retry_backoff_seconds": 10,
        "retry_backoff_max_seconds": 600,
        "timeout_seconds": 120,
        "credentials": ["lab"],
        "description": "every night",
        "labels": ["prod"],
        "depends_on": [first["id"]],
        "allow_overlap": False,
        "schedule": {"kind": "cron", "expression": "0 2 * * *"},
    }
    job = ok(api.post("/api/v1/jobs", json=body, as_="operator"), 201)
    assert job["id"] and job["name"] == "nightly" and job["job_type"] == "devjob"
    assert job["targets"] == {"tags": ["core"], "devices": sorted(job["targets"]["devices"])}
    assert len(job["targets"]["devices"]) == 2 and r1 in job["targets"]["devices"]
    assert job["priority"] == 10 and job["priority_name"] == "high"
    assert job["max_retries"] == 3 and job["retry_backoff_seconds"] == 10
    assert job["retry_backoff_max_seconds"] == 600 and job["timeout_seconds"] == 120
    assert job["credentials"] == ["lab"] and job["labels"] == ["prod"]
    assert job["depends_on"] == [first["id"]] and job["allow_overlap"] is False
    assert [s["kind"] for s in job["schedules"]] == ["cron"]
    assert job["schedules"][0]["expression"] == "0 2 * * *"
    assert job["schedules"][0]["next_fire_at"]
    assert ok(api.get(f"/api/v1/jobs/{job['id']}", as_="viewer")) == job


@pytest.mark.parametrize(
    "schedule",
    (
        {"kind": "interval", "minutes": 15},
        {"kind": "once", "at": "2099-01-01T10:00:00Z"},
        None,
    ),
)
def test_schedule_kinds(api: Api, schedule) -> None:
    job = writer_job(api, "s", schedule=schedule)
    assert len(job["schedules"]) == (0 if schedule is None else 1)
    if schedule:
        assert job["schedules"][0]["kind"] == schedule["kind"]


@pytest.mark.parametrize(
    ("schedule", "field"),
    (
        ({"kind": "cron", "expression": "61 * * * *"}, "schedule.cron"),
        ({"kind": "once", "at": "2001-01-01T10:00:00Z"}, "schedule.run_at"),
        ({"kind": "cron", "expression": "0 2 * * *", "timezone": "Mars/Base"}, "schedule.timezone"),
        ({"kind": "weekly"}, "schedule"),
        ({"kind": "interval", "minutes": 0}, "schedule.interval.minutes"),
    ),
)
def test_a_bad_schedule_leaves_no_job(api: Api, app, schedule, field) -> None:
    response = api.post(
        "/api/v1/jobs", json={"name": "bad", "job_type": "writer", "schedule": schedule}
    )
    body = error(response, 422)
    assert any(key.startswith(field.split(".")[0]) for key in body["fields"]), body
    with app.app_context():
        assert db.session.query(Job).count() == 0
        assert db.session.query(Schedule).count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    (
        ({"name": "x", "job_type": "nope"}, "job_type"),
        ({"name": "x", "job_type": "writer", "priority": "urgent"}, "priority"),
        ({"name": "x", "job_type": "writer", "max_retries": 99}, "max_retries"),
        ({"name": "x", "job_type": "writer", "params": {"mode": "sideways"}}, "mode"),
        ({"name": "x", "job_type": "devjob", "targets": {"devices": ["ghost"]}}, "devices"),
        ({"name": "x", "job_type": "writer", "depends_on": [12345]}, "depends_on"),
        ({"name": "x", "job_type": "writer", "credentials": ["ghost"]}, "credentials"),
        ({"name": "", "job_type": "writer"}, "name"),
        ({"job_type": "writer"}, "name"),
        ({"name": "x", "job_type": "writer", "allow_overlap": "yes"}, "allow_overlap"),
        ({"name": "x", "job_type": "writer", "unknown": 1}, "unknown"),
    ),
)
def test_bad_jobs_are_422_with_the_field(api: Api, app, body, field) -> None:
    found = error(api.post("/api/v1/jobs", json=body), 422)
    assert any(field in key or field in value for key, value in found["fields"].items()), found
    with app.app_context():
        assert db.session.query(Job).count() == 0


def test_a_taken_name_is_409(api: Api) -> None:
    writer_job(api, "same")
    error(api.post("/api/v1/jobs", json={"name": "same", "job_type": "writer"}), 409)


def test_list_change_and_delete_jobs(api: Api) -> None:
    a = writer_job(api, "a", labels=["x"])
    writer_job(api, "b")
    assert [j["name"] for j in ok(api.get("/api/v1/jobs", as_="viewer"))["items"]] == ["a", "b"]
    assert [j["name"] for j in ok(api.get("/api/v1/jobs?label=x"))["items"]] == ["a"]
    assert [j["name"] for j in ok(api.get("/api/v1/jobs?search=b"))["items"]] == ["b"]

    error(api.patch(f"/api/v1/jobs/{a['id']}", json={"name": "a2"}, as_="viewer"), 403)
    changed = ok(
        api.patch(
            f"/api/v1/jobs/{a['id']}",
            json={"name": "a2", "priority": "low", "schedule": {"kind": "interval", "minutes": 5}},
            as_="operator",
        )
    )
    assert changed["name"] == "a2" and changed["priority_name"] == "low"
    assert changed["params"]["token"] == "***"  # kept, and never shown
    assert [s["minutes"] for s in changed["schedules"]] == [5]
    cleared = ok(api.patch(f"/api/v1/jobs/{a['id']}", json={"schedule": None}))
    assert cleared["schedules"] == []
    error(api.patch(f"/api/v1/jobs/{a['id']}", json={"job_type": "devjob"}), 422)

    error(api.delete(f"/api/v1/jobs/{a['id']}", as_="viewer"), 403)
    assert api.delete(f"/api/v1/jobs/{a['id']}", as_="operator").status_code == 204
    error(api.get(f"/api/v1/jobs/{a['id']}"), 404)


def test_secret_params_never_come_back(api: Api, app) -> None:
    job = writer_job(api, "sec")
    run = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}), 201)
    drain(app)
    answers = [
        api.get("/api/v1/jobs"),
        api.get(f"/api/v1/jobs/{job['id']}"),
        api.get(f"/api/v1/runs/{run['id']}"),
        api.get(f"/api/v1/runs/{run['id']}/events"),
        api.get(f"/api/v1/logs?run_id={run['id']}"),
        api.get("/api/v1/audit"),
    ]
    for answer in answers:
        assert answer.status_code == 200
        assert SECRET not in answer.get_data(as_text=True)
        assert "hidden" not in answer.get_data(as_text=True)  # the writer logs a password


def test_a_run_from_start_to_end(api: Api, app) -> None:
    job = writer_job(api, "w")
    error(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}, as_="viewer"), 403)
    started = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}, as_="operator"), 201)
    assert started["id"] and started["status"] == "QUEUED"
    drain(app)

    run = ok(api.get(f"/api/v1/runs/{started['id']}", as_="viewer"))
    assert run["id"] == started["id"] and run["job_id"] == job["id"]
    assert run["status"] == "COMPLETED_SUCCESS" and run["final"] is True
    assert run["attempt"] == 1 and run["progress"] == {"done": 1, "total": 1}
    assert run["message"] == "wrote it" and run["error"] is None
    assert run["summary"] == {"total": 0, "by_status": {}, "changed": 0}
    assert run["triggered_by"] == "api:operator" and "results" not in run
    assert {"result", "started_at", "finished_at", "duration_ms"} <= set(run)
    assert ok(api.get(run["results_url"], as_="viewer")) == {"items": [], "next": None}

    listed = ok(api.get(f"/api/v1/runs/{run['id']}/events", as_="viewer"))
    events = listed["items"]
    assert listed["next"] is None
    types = [e["type"] for e in events]
    assert types[0] == "job.created" and "job.started" in types and types[-1] == "job.completed"
    for event in events:
        assert {"type", "created_at", "exception", "data", "pre_data", "post_data"} <= set(event)
        assert event["signal_id"] == run["signal_id"]
    assert events[-1]["post_data"] == {"written": True}
    only = ok(api.get(f"/api/v1/runs/{run['id']}/events?type=job.completed"))
    assert [e["type"] for e in only["items"]] == ["job.completed"]

    logs = ok(api.get(f"/api/v1/logs?run_id={run['id']}&log_type=job", as_="viewer"))
    assert logs["next"] is None and [line["message"] for line in logs["items"]] == ["writing"]
    line = logs["items"][0]
    assert line["source"] == "worker.job.writer" and line["level"] == "info"
    assert line["job_id"] == job["id"] and line["run_id"] == run["id"]
    assert line["device_id"] is None and line["meta"]["tag"] == "w"


def test_device_results_and_relaunch_of_the_failed(api: Api, app) -> None:
    good, bad = add_device(api, "good-1", ["lab"]), add_device(api, "bad-1", ["lab"])
    add_device(api, "other")
    job = ok(
        api.post(
            "/api/v1/jobs",
            json={"name": "d", "job_type": "devjob", "targets": {"tags": ["lab"]}},
        ),
        201,
    )
    started = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}), 201)
    drain(app)
    run = ok(api.get(f"/api/v1/runs/{started['id']}"))
    assert run["status"] == "COMPLETED_PARTIAL_FAILURE"
    assert run["progress"] == {"done": 2, "total": 2}
    assert run["summary"]["total"] == 2 and run["summary"]["by_status"]["success"] == 1
    by_name = {r["device"]: r for r in results(api, run["id"])}
    assert list(by_name) == ["bad-1", "good-1"]  # by device name
    assert by_name["good-1"]["status"] == "success" and by_name["good-1"]["device_id"] == good
    assert by_name["good-1"]["output_bytes"] is None and "output" not in by_name["good-1"]
    assert (
        by_name["bad-1"]["status"] != "success"
        and "did not answer" in (by_name["bad-1"]["message"])
    )

    error(api.post(f"/api/v1/runs/{run['id']}/relaunch", json={}, as_="viewer"), 403)
    again = ok(api.post(f"/api/v1/runs/{run['id']}/relaunch", json={"failed_only": True}), 201)
    assert again["device_ids"] == [bad] and again["relaunch_of"] == run["id"]
    drain(app)
    assert [r["device"] for r in results(api, again["id"])] == ["bad-1"]
    all_again = ok(api.post(f"/api/v1/runs/{run['id']}/relaunch"), 201)
    assert all_again["device_ids"] is None
    drain(app)
    assert [r["device"] for r in results(api, all_again["id"])] == ["bad-1", "good-1"]


def test_a_run_restricted_to_devices_by_name(api: Api, app) -> None:
    add_device(api, "a1", ["lab"])
    b1 = add_device(api, "b1", ["lab"])
    job = ok(
        api.post(
            "/api/v1/jobs", json={"name": "d", "job_type": "devjob", "targets": {"tags": ["lab"]}}
        ),
        201,
    )
    run = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={"devices": ["b1"]}), 201)
    assert run["device_ids"] == [b1]
    error(api.post(f"/api/v1/jobs/{job['id']}/runs", json={"devices": ["zz"]}), 422)
    drain(app)
    assert [r["device"] for r in results(api, run["id"])] == ["b1"]


def test_now_answers_with_the_result(api: Api) -> None:
    job = writer_job(api, "n")
    run = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={"now": True}), 201)
    assert run["status"] == "COMPLETED_SUCCESS" and run["outcome"] == "wrote it"
    assert run["triggered_by"] == "run_now"


def test_now_of_a_job_that_raises_is_not_a_500(api: Api) -> None:
    job = writer_job(api, "r", mode="raise")
    run = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={"now": True}), 201)
    assert run["status"].startswith("FAILED") and "boom" in (run["error"] or "")
    body = error(
        api.post(f"/api/v1/jobs/{job['id']}/runs", json={"now": True, "devices": [1]}), 422
    )
    assert "devices" in body["fields"]


def test_wait_returns_when_the_run_ends_or_the_time_is_up(api: Api, app) -> None:
    job = writer_job(api, "w")
    started = time.monotonic()
    run = ok(api.post(f"/api/v1/jobs/{job['id']}/runs?wait=0.6", json={}), 201)
    assert run["status"] == "QUEUED" and time.monotonic() - started >= 0.5
    error(api.post(f"/api/v1/jobs/{job['id']}/runs?wait=-1", json={}), 422)
    drain(app)
    assert ok(api.get(f"/api/v1/runs/{run['id']}"))["status"] == "COMPLETED_SUCCESS"


def test_schedule_at_and_depends_on_runs(api: Api) -> None:
    job = writer_job(api, "later")
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={"schedule_at": at}), 201)
    assert later["status"] == "SCHEDULED" and later["scheduled_at"]
    other = writer_job(api, "after")
    waiting = ok(
        api.post(f"/api/v1/jobs/{other['id']}/runs", json={"depends_on_runs": [later["id"]]}),
        201,
    )
    assert waiting["status"] == "WAITING" and waiting["depends_on_runs"] == [later["id"]]
    naive = error(
        api.post(f"/api/v1/jobs/{job['id']}/runs", json={"schedule_at": "2099-01-01T10:00:00"}),
        422,
    )
    assert "schedule_at" in naive["fields"]
    error(api.post(f"/api/v1/jobs/{job['id']}/runs", json={"depends_on_runs": [999]}), 422)
    # cancelling the dependency ends the run that waits for it
    ok(api.post(f"/api/v1/runs/{later['id']}/cancel"))
    ended = ok(api.get(f"/api/v1/runs/{waiting['id']}"))
    assert ended["status"] == "CANCELLED" and f"#{later['id']}" in ended["message"]


def test_cancel(api: Api) -> None:
    job = writer_job(api, "c")
    run = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}), 201)
    error(api.post(f"/api/v1/runs/{run['id']}/cancel", as_="viewer"), 403)
    cancelled = ok(api.post(f"/api/v1/runs/{run['id']}/cancel", as_="operator"))
    assert cancelled["status"] == "CANCELLED"
    error(api.post(f"/api/v1/runs/{run['id']}/cancel"), 409)
    error(api.post("/api/v1/runs/424242/cancel"), 404)


def test_runs_list_filters_and_pages(api: Api, app) -> None:
    a, b = writer_job(api, "a"), writer_job(api, "b", mode="fail")
    ids = [ok(api.post(f"/api/v1/jobs/{j['id']}/runs", json={}), 201)["id"] for j in (a, b, a)]
    drain(app)
    page = ok(api.get("/api/v1/runs?limit=2", as_="viewer"))
    assert [r["id"] for r in page["items"]] == [ids[2], ids[1]] and page["next"] == str(ids[1])
    rest = ok(api.get(f"/api/v1/runs?limit=2&before={page['next']}"))
    assert [r["id"] for r in rest["items"]] == [ids[0]] and rest["next"] is None
    by_job = ok(api.get(f"/api/v1/runs?job_id={a['id']}"))
    assert [r["id"] for r in by_job["items"]] == [ids[2], ids[0]]
    failed = ok(api.get("/api/v1/runs?status=COMPLETED_FAILURE&status=TIMEOUT"))
    assert [r["id"] for r in failed["items"]] == [ids[1]]
    error(api.get("/api/v1/runs?status=BORED"), 422)
    assert ok(api.get("/api/v1/runs?job_type=devjob"))["items"] == []


def test_logs_filter_and_page(api: Api, app) -> None:
    job = writer_job(api, "l")
    for _ in range(3):
        ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}), 201)
        drain(app)
    page = ok(api.get("/api/v1/logs?log_type=job&limit=2"))
    assert len(page["items"]) == 2 and page["next"] is not None
    rest = ok(api.get(f"/api/v1/logs?log_type=job&limit=2&before={page['next']}"))
    assert len(rest["items"]) == 1 and rest["next"] is None
    ids = [line["id"] for line in page["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True)
    forward = ok(api.get(f"/api/v1/logs?log_type=job&after={ids[-1]}"))
    assert [line["id"] for line in forward["items"]] == sorted(ids[:-1])
    assert ok(api.get("/api/v1/logs?level=error&log_type=job"))["items"] == []
    assert ok(api.get("/api/v1/logs?source=worker.job.writer&limit=1"))["items"]
    assert json.dumps(ok(api.get("/api/v1/logs?since=2000-01-01T00:00:00Z&limit=1")))
