"""The API's devices, tags, credentials, imports, exports, configs, schedules, statistics."""

from __future__ import annotations

import pytest
from flask import current_app

from app import config_store
from tests.integration.test_api_support import Api, error, make_tokens, ok

PASSWORD = "Pa55-device-login"
ENABLE = "En4ble-secret-value"


@pytest.fixture
def api(app, client) -> Api:
    return Api(client=client, tokens=make_tokens(app))


def test_devices_crud_with_the_documented_shape(api: Api) -> None:
    body = {
        "name": "r1",
        "host": "192.0.2.1",
        "port": 2222,
        "platform": "cisco_ios",
        "tags": ["core", "lab"],
    }
    error(api.post("/api/v1/devices", json=body, as_="viewer"), 403)
    device = ok(api.post("/api/v1/devices", json=body, as_="operator"), 201)
    assert device["id"] and {k: device[k] for k in body} == body
    assert device["driver"] == "netmiko" and device["enabled"] is True
    assert ok(api.get(f"/api/v1/devices/{device['id']}", as_="viewer")) == device
    error(api.post("/api/v1/devices", json=body), 409)

    changed = ok(api.patch(f"/api/v1/devices/{device['id']}", json={"tags": ["edge"], "port": 22}))
    assert changed["tags"] == ["edge"] and changed["port"] == 22 and changed["host"] == "192.0.2.1"
    assert ok(api.get("/api/v1/devices?tag=edge"))["items"][0]["name"] == "r1"
    assert ok(api.get("/api/v1/devices?search=nothing"))["items"] == []
    assert ok(api.get("/api/v1/devices?enabled=false"))["items"] == []

    error(api.delete(f"/api/v1/devices/{device['id']}", as_="viewer"), 403)
    assert api.delete(f"/api/v1/devices/{device['id']}", as_="operator").status_code == 204
    error(api.get(f"/api/v1/devices/{device['id']}"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    (
        ({"name": "bad name", "host": "192.0.2.1", "platform": "cisco_ios"}, "name"),
        ({"name": "r1", "host": "300.1.1.1", "platform": "cisco_ios"}, "host"),
        ({"name": "r1", "host": "192.0.2.1", "platform": "toaster"}, "platform"),
        ({"name": "r1", "host": "192.0.2.1", "platform": "cisco_ios", "port": 0}, "port"),
        ({"name": "r1", "host": "192.0.2.1"}, "platform"),
        ({"name": "r1", "host": "192.0.2.1", "platform": "cisco_ios", "tags": "a"}, "tags"),
    ),
)
def test_bad_devices_are_422(api: Api, body, field) -> None:
    assert field in error(api.post("/api/v1/devices", json=body), 422)["fields"]
    assert ok(api.get("/api/v1/devices"))["items"] == []


def test_credentials_never_show_a_secret(api: Api) -> None:
    body = {
        "name": "lab",
        "username": "netops",
        "password": PASSWORD,
        "secret": ENABLE,
        "priority": 10,
        "tags": ["lab"],
    }
    error(api.post("/api/v1/credentials", json=body, as_="operator"), 403)
    created = api.post("/api/v1/credentials", json=body, as_="admin")
    credential = ok(created, 201)
    assert credential["id"] and credential["name"] == "lab" and credential["username"] == "netops"
    assert credential["priority"] == 10 and credential["tags"] == ["lab"]
    assert credential["has_enable_secret"] is True
    assert "password" not in credential and "secret" not in credential

    changed = api.patch(
        f"/api/v1/credentials/{credential['id']}", json={"password": PASSWORD + "2", "secret": ""}
    )
    assert ok(changed)["has_enable_secret"] is False
    answers = [
        created,
        changed,
        api.get("/api/v1/credentials", as_="viewer"),
        api.get(f"/api/v1/credentials/{credential['id']}", as_="viewer"),
        api.get("/api/v1/audit"),
    ]
    for answer in answers:
        text = answer.get_data(as_text=True)
        assert PASSWORD not in text and ENABLE not in text and "gAAAA" not in text

    error(
        api.patch(f"/api/v1/credentials/{credential['id']}", json={"priority": 1}, as_="operator"),
        403,
    )
    error(api.post("/api/v1/credentials", json={**body, "name": "x", "password": ""}), 422)
    error(api.post("/api/v1/credentials", json=body), 409)
    assert api.delete(f"/api/v1/credentials/{credential['id']}").status_code == 204
    error(api.get(f"/api/v1/credentials/{credential['id']}"), 404)


def test_csv_import_reports_bad_rows_by_line_and_writes_nothing(api: Api) -> None:
    text = (
        "name,host,platform,tags\n"
        "r1,192.0.2.1,cisco_ios,core;lab\n"
        "r2,not a host,cisco_ios,\n"
        "r3,192.0.2.3,toaster,\n"
    )
    error(api.post("/api/v1/imports", json={"format": "csv", "csv": text}, as_="viewer"), 403)
    body = error(api.post("/api/v1/imports", json={"format": "csv", "csv": text}), 422)
    assert [(e["line"], e["name"]) for e in body["errors"]] == [(3, "r2"), (4, "r3")]
    assert set(body["fields"]) == {"line 3", "line 4"}
    assert ok(api.get("/api/v1/devices"))["items"] == []

    partial = ok(api.post("/api/v1/imports", json={"format": "csv", "csv": text, "partial": True}))
    assert partial["created"] == 1 and len(partial["errors"]) == 2
    good = "name,host,platform\nr1,192.0.2.9,cisco_ios\nr4,192.0.2.4,arista_eos\n"
    report = ok(api.post("/api/v1/imports", json={"format": "csv", "csv": good}, as_="operator"))
    assert (report["created"], report["updated"], report["errors"]) == (1, 1, [])
    error(api.post("/api/v1/imports", json={"format": "csv"}), 422)


def test_nornir_import_and_exports(api: Api) -> None:
    hosts = "r1:\n  hostname: 192.0.2.1\n  platform: ios\n  groups: [core]\nr2:\n  platform: ios\n"
    groups = "core: {}\n"
    body = error(
        api.post("/api/v1/imports", json={"format": "nornir", "hosts": hosts, "groups": groups}),
        422,
    )
    assert [(e["line"], e["name"]) for e in body["errors"]] == [(5, "r2")]
    control = error(
        api.post("/api/v1/imports", json={"format": "nornir", "hosts": "r1:\n  x: \x8f\n"}), 422
    )
    assert [e["line"] for e in control["errors"]] == [2]
    hosts = hosts.replace("r2:\n  platform: ios\n", "")
    report = ok(
        api.post("/api/v1/imports", json={"format": "nornir", "hosts": hosts, "groups": groups})
    )
    assert report["created"] == 1
    device = ok(api.get("/api/v1/devices"))["items"][0]
    assert (device["platform"], device["tags"]) == ("cisco_ios", ["core"])

    csv_export = ok(api.get("/api/v1/exports?format=csv", as_="viewer"))
    assert csv_export["files"]["devices.csv"].startswith("name,host,port")
    nornir_export = ok(api.get("/api/v1/exports?format=nornir"))
    assert set(nornir_export["files"]) == {"hosts.yaml", "groups.yaml"}
    error(api.get("/api/v1/exports?format=xml"), 422)


def test_tags(api: Api) -> None:
    ok(
        api.post(
            "/api/v1/devices",
            json={"name": "r1", "host": "192.0.2.1", "platform": "cisco_ios", "tags": ["a"]},
        ),
        201,
    )
    tags = ok(api.get("/api/v1/tags", as_="viewer"))["items"]
    assert [(t["name"], t["device_count"]) for t in tags] == [("a", 1)]
    tag_id = tags[0]["id"]
    error(api.patch(f"/api/v1/tags/{tag_id}", json={"name": "b"}, as_="viewer"), 403)
    renamed = ok(api.patch(f"/api/v1/tags/{tag_id}", json={"name": "b", "description": "B"}))
    assert (renamed["name"], renamed["description"], renamed["device_count"]) == ("b", "B", 1)
    ok(
        api.post(
            "/api/v1/jobs", json={"name": "j", "job_type": "devjob", "targets": {"tags": ["b"]}}
        ),
        201,
    )
    error(api.delete(f"/api/v1/tags/{tag_id}"), 409)
    assert api.delete(f"/api/v1/tags/{tag_id}?force=true").status_code == 204
    assert ok(api.get("/api/v1/devices"))["items"][0]["tags"] == []


def test_config_history_text_and_diff(api: Api, app) -> None:
    device = ok(
        api.post(
            "/api/v1/devices", json={"name": "r1", "host": "192.0.2.1", "platform": "cisco_ios"}
        ),
        201,
    )
    with app.app_context():
        store = config_store.store_for(current_app)
        first = store.commit_run(run_id=7, job_name="b", configs={"r1": "hostname r1\n"}).sha
        second = store.commit_run(
            run_id=8, job_name="b", configs={"r1": "hostname r1\ninterface x\n"}
        ).sha
    history = ok(api.get(f"/api/v1/devices/{device['id']}/configs", as_="viewer"))
    versions = history["items"]
    assert [(v["commit"], v["run_id"]) for v in versions] == [(second, 8), (first, 7)]
    assert history["next"] is None
    assert all(v["created_at"] for v in versions)

    text = api.get(f"/api/v1/devices/{device['id']}/configs/{first}", as_="viewer")
    assert text.status_code == 200 and text.mimetype == "text/plain"
    assert text.get_data(as_text=True) == "hostname r1\n"
    latest = api.get(f"/api/v1/devices/{device['id']}/configs/HEAD")
    assert "interface x" in latest.get_data(as_text=True)
    diff = api.get(f"/api/v1/devices/{device['id']}/diff?from={first}&to={second}")
    assert diff.status_code == 200 and "+interface x" in diff.get_data(as_text=True)

    error(api.get(f"/api/v1/devices/{device['id']}/configs/deadbeef"), 404)
    error(api.get(f"/api/v1/devices/{device['id']}/configs/not-a-sha"), 404)
    error(api.get(f"/api/v1/devices/{device['id']}/diff?from=nope"), 404)
    error(api.get(f"/api/v1/devices/{device['id']}/diff"), 422)
    error(api.get("/api/v1/devices/999/configs"), 404)
    other = ok(
        api.post(
            "/api/v1/devices", json={"name": "r2", "host": "192.0.2.2", "platform": "cisco_ios"}
        ),
        201,
    )
    assert ok(api.get(f"/api/v1/devices/{other['id']}/configs")) == {"items": [], "next": None}


def test_schedules(api: Api) -> None:
    job = ok(api.post("/api/v1/jobs", json={"name": "j", "job_type": "writer"}), 201)
    body = {"job_id": job["id"], "schedule": {"kind": "interval", "minutes": 30}}
    error(api.post("/api/v1/schedules", json=body, as_="viewer"), 403)
    schedule = ok(api.post("/api/v1/schedules", json=body, as_="operator"), 201)
    assert schedule["job_id"] == job["id"] and schedule["minutes"] == 30
    assert schedule["next_fire_at"] and schedule["description"] == "every 30 minutes"
    listed = ok(api.get(f"/api/v1/schedules?job_id={job['id']}", as_="viewer"))["items"]
    assert [s["id"] for s in listed] == [schedule["id"]]

    off = ok(api.patch(f"/api/v1/schedules/{schedule['id']}", json={"enabled": False}))
    assert off["enabled"] is False and off["next_fire_at"] is None
    cron = ok(
        api.patch(
            f"/api/v1/schedules/{schedule['id']}",
            json={"schedule": {"kind": "cron", "expression": "*/5 * * * *"}},
        )
    )
    assert cron["kind"] == "cron" and cron["enabled"] is True
    error(
        api.patch(
            f"/api/v1/schedules/{schedule['id']}",
            json={"schedule": {"kind": "cron", "expression": "nope"}},
        ),
        422,
    )
    assert ok(api.get(f"/api/v1/schedules/{schedule['id']}"))["kind"] == "cron"
    error(api.post("/api/v1/schedules", json={**body, "job_id": 9999}), 404)
    assert api.delete(f"/api/v1/schedules/{schedule['id']}").status_code == 204
    error(api.get(f"/api/v1/schedules/{schedule['id']}"), 404)


def test_statistics(api: Api) -> None:
    report = ok(api.get("/api/v1/statistics?days=3", as_="viewer"))
    assert report["runs"]["finished"] == 0 and len(report["runs_per_day"]) == 3
    assert report["queue"]["depth"] == 0 and report["workers"]["alive"] == 0
    assert report["failing_devices"] == []
    ok(api.get("/api/v1/statistics?since=2020-01-01T00:00:00Z&until=2030-01-01T00:00:00Z"))
    error(api.get("/api/v1/statistics?days=0"), 422)


def test_audit_trail_pages(api: Api) -> None:
    for n in range(3):
        ok(
            api.post(
                "/api/v1/devices",
                json={"name": f"r{n}", "host": "192.0.2.1", "platform": "cisco_ios"},
            ),
            201,
        )
    page = ok(api.get("/api/v1/audit?object_type=device&limit=2"))
    assert [e["action"] for e in page["items"]] == ["create", "create"]
    assert page["items"][0]["actor"] == "admin" and page["next"] is not None
    rest = ok(api.get(f"/api/v1/audit?object_type=device&limit=2&before={page['next']}"))
    assert len(rest["items"]) == 1 and rest["next"] is None
    assert ok(api.get("/api/v1/audit?actor=nobody"))["items"] == []
