"""Every list of the API pages: ``limit`` and ``cursor`` honoured, each row seen once.

A script walking a 10,000-device inventory or a 10,000-device run asks page after page
(``{"items", "next"}``, ``cursor=next``); a run's answer counts its results and carries
no device output; one device's output is fetched on its own. A misspelt parameter or a
cursor edited by hand is a 422 that says so, never a silently unfiltered answer.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from flask import current_app
from sqlalchemy import event, select

from app import config_store
from app.api import paging
from app.extensions import db
from app.models import Device, DeviceBackup, DeviceResult, utcnow
from app.services import credentials, inventory, jobs, runs, schedules
from tests.integration.helpers import drain
from tests.integration.test_api_support import Api, error, make_tokens, ok

#: rows of each kind the dataset holds: more than one page of LIMIT, not a round number
ROWS = 5
LIMIT = 2
#: a device's output the size of a small config
OUTPUT = "hostname x\n" + "interface Gi0/1\n description secret\n" * 2000


@pytest.fixture
def engine_config(engine_config):
    """The webhooks point at 127.0.0.1: an admin allowed it."""
    return {**engine_config, "ROOKERY_WEBHOOK_ALLOW": "127.0.0.1/32"}


@pytest.fixture
def api(app, client) -> Api:
    return Api(client=client, tokens=make_tokens(app))


def walk(api: Api, path: str, limit: int = LIMIT) -> list[dict[str, Any]]:
    """Every item of a list, page after page of ``limit``; each page checked."""
    sep = "&" if "?" in path else "?"
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10_000):
        query = f"{path}{sep}limit={limit}" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = ok(api.get(query))
        assert set(page) == {"items", "next"}, page
        assert len(page["items"]) <= limit, query
        items += page["items"]
        cursor = page["next"]
        if cursor is None:
            return items
        assert isinstance(cursor, str) and len(page["items"]) == limit, (query, page)
    pytest.fail(f"{path}: the cursor never ended")


def identity(item: dict[str, Any]) -> Any:
    """What tells one item of a list from another."""
    for key in ("id", "commit"):
        if key in item:
            return item[key]
    return item["rule"]["id"]  # the compliance summary: one item per rule


@pytest.fixture
def world(app, api: Api) -> dict[str, Any]:
    """ROWS of everything a list shows, made the way people make them (mostly the API)."""
    made: dict[str, Any] = {}
    now = utcnow()
    with app.app_context():
        for i in range(ROWS):
            device = inventory.create_device(
                name=f"r{i}", host=f"192.0.2.{i + 1}", platform="cisco_ios", tags=[f"t{i}", "all"],
                actor="test",
            )  # fmt: skip
            if i % 2:  # some backed up (ages differ), some never: the backup orders mix
                at = now - timedelta(hours=i)
                db.session.add(
                    DeviceBackup(
                        device_id=device.id, last_at=at, last_status="success", last_success_at=at
                    )
                )
            # priorities repeat: the name breaks the tie
            credentials.create_credential(
                f"c{i}", "netops", "pw", priority=10 * (i % 2), tags=["all"], actor="test"
            )
        db.session.commit()
        for i in range(ROWS):
            job = jobs.create_job(name=f"j{i}", job_type="writer", actor="test")
            schedules.create_schedule(job, kind="interval", interval_minutes=5, actor="test")
        devjob = jobs.create_job(name="visit", job_type="devjob", target_tags=["all"], actor="test")
        made["devjob"] = devjob.id
        store = config_store.store_for(current_app)
        for i in range(ROWS):
            store.commit_run(run_id=100 + i, job_name="b", configs={"r0": f"hostname r0\n!{i}\n"})
        made["device"] = db.session.scalar(select(Device.id).where(Device.name == "r0"))
    writer = ok(api.get("/api/v1/jobs?search=j0"))["items"][0]["id"]
    made["writer"] = writer
    for i in range(ROWS):
        body = {"url": f"http://127.0.0.1:9/hook{i}", "events": ["failure"]}
        ok(api.post(f"/api/v1/jobs/{writer}/webhooks", json=body, as_="operator"), 201)
        rule = {"name": f"rule{i}", "required": f"ntp server 192.0.2.{i}"}
        ok(api.post("/api/v1/compliance/rules", json=rule, as_="operator"), 201)
        change = {"name": f"change{i}", "targets": {"tags": ["all"]}, "template": "ntp x"}
        ok(api.post("/api/v1/changes", json=change, as_="operator"), 201)
    run = ok(api.post(f"/api/v1/jobs/{made['devjob']}/runs", json={}), 201)
    made["run"] = run["id"]
    drain(app)
    return made


def lists(world: dict[str, Any]) -> dict[str, int | None]:
    """Every list endpoint (with what it needs) -> how many items the world gives it
    (None: some, at least LIMIT + 1)."""
    return {
        "/api/v1/devices": ROWS,
        "/api/v1/devices?sort=last_backup": ROWS,
        "/api/v1/devices?sort=-last_backup": ROWS,
        "/api/v1/devices?tag=all&search=r": ROWS,
        "/api/v1/tags": ROWS + 1,
        "/api/v1/credentials": ROWS,
        "/api/v1/jobs": None,  # ours, and the compliance checks' own
        "/api/v1/schedules": ROWS,
        "/api/v1/runs": None,
        f"/api/v1/runs/{world['run']}/events": None,
        f"/api/v1/runs/{world['run']}/results": ROWS,
        "/api/v1/logs": None,
        f"/api/v1/logs?run_id={world['run']}&log_type=job": None,
        f"/api/v1/logs?run_id={world['run']}&after=1": None,
        f"/api/v1/jobs/{world['writer']}/webhooks": ROWS,
        "/api/v1/audit": None,
        "/api/v1/changes": ROWS,
        "/api/v1/compliance/rules": ROWS,
        "/api/v1/compliance": ROWS,
        f"/api/v1/devices/{world['device']}/configs": ROWS,
    }


def test_every_list_walks_page_by_page_each_row_once(api: Api, world) -> None:
    for path, count in lists(world).items():
        sep = "&" if "?" in path else "?"
        whole = ok(api.get(f"{path}{sep}limit=500"))
        assert whole["next"] is None, path
        walked = walk(api, path)
        assert walked == whole["items"], f"{path}: pages differ from the whole list"
        ids = [identity(item) for item in walked]
        assert len(set(ids)) == len(ids), f"{path}: an item twice"
        if count is None:
            assert len(walked) > LIMIT, path
        else:
            assert len(walked) == count, path
        first = ok(api.get(f"{path}{sep}limit=1"))
        assert first["items"] == whole["items"][:1] and first["next"], path


def test_the_orders_pages_keep(api: Api, world) -> None:
    names = lambda path: [d["name"] for d in walk(api, path)]  # noqa: E731
    assert names("/api/v1/devices") == ["r0", "r1", "r2", "r3", "r4"]
    assert names("/api/v1/devices?sort=last_backup") == ["r0", "r2", "r4", "r3", "r1"]
    assert names("/api/v1/devices?sort=-last_backup") == ["r1", "r3", "r0", "r2", "r4"]
    assert names("/api/v1/credentials") == ["c0", "c2", "c4", "c1", "c3"]
    runs_ids = [r["id"] for r in walk(api, "/api/v1/runs")]
    assert runs_ids == sorted(runs_ids, reverse=True)
    audit_ids = [a["id"] for a in walk(api, "/api/v1/audit")]
    assert audit_ids == sorted(audit_ids, reverse=True)
    events = [e["id"] for e in walk(api, f"/api/v1/runs/{world['run']}/events")]
    assert events == sorted(events)
    # the older parameters take a cursor of an id-ordered list
    page = ok(api.get("/api/v1/runs?limit=1"))
    older = ok(api.get(f"/api/v1/runs?limit=1&before={page['next']}"))
    assert older["items"][0]["id"] < page["items"][0]["id"]


def test_limit_is_honoured_and_capped(api: Api, world) -> None:
    for path in lists(world):
        sep = "&" if "?" in path else "?"
        assert len(ok(api.get(f"{path}{sep}limit=1"))["items"]) == 1, path
        for bad in ("0", "-1", "100000", "many"):
            body = error(api.get(f"{path}{sep}limit={bad}"), 422)
            assert "limit" in body["fields"], (path, body)


def test_unknown_parameters_and_bad_cursors_are_422(api: Api, world) -> None:
    for path in lists(world):
        sep = "&" if "?" in path else "?"
        body = error(api.get(f"{path}{sep}limt=5&colour=red"), 422)
        assert {"limt", "colour"} <= set(body["fields"]), (path, body)
        assert "limt" in body["message"] and "colour" in body["message"], body["message"]
        for cursor in ("garbage", "0", "-3", "eyJ4IjoxfQ", "W10", "99999999999999999999"):
            body = error(api.get(f"{path}{sep}cursor={quote(cursor)}"), 422)
            assert "cursor" in body["fields"], (path, cursor, body)
            assert "cursor" in body["message"].lower(), (path, cursor, body)


def test_calls_without_parameters_refuse_any(api: Api, world) -> None:
    for path in (
        f"/api/v1/runs/{world['run']}",
        f"/api/v1/devices/{world['device']}",
        f"/api/v1/jobs/{world['writer']}",
        "/api/v1/me",
    ):
        body = error(api.get(f"{path}?verbose=1"), 422)
        assert body["fields"] == {"verbose": "Unknown query parameter."}
        assert "verbose" in body["message"] and "takes none" in body["message"]
    # a write too, and before anything is written
    body = error(api.post(f"/api/v1/runs/{world['run']}/relaunch?force=1", json={}), 422)
    assert "force" in body["fields"]
    assert len(ok(api.get(f"/api/v1/runs?job_id={world['devjob']}"))["items"]) == 1


def test_a_cursor_belongs_to_its_list(api: Api, world) -> None:
    by_name = ok(api.get("/api/v1/devices?limit=2"))["next"]
    body = error(api.get(f"/api/v1/devices?sort=last_backup&cursor={by_name}"), 422)
    assert "sort=name" in body["message"]
    # cursor and before are one thing said twice
    body = error(api.get("/api/v1/runs?before=5&cursor=5"), 422)
    assert "cursor" in body["fields"]


def test_every_list_in_the_openapi_document_pages(api: Api, world) -> None:
    """A new list endpoint that answers every row at once fails here."""
    document = ok(api.get("/api/v1/openapi.json", as_=None))
    schemas = document["components"]["schemas"]
    not_lists = {
        # a search answers at most 500 devices and says it was cut (``truncated``)
        "/api/v1/configs/search",
        # one device's result per compliance rule: as many as there are rules
        "/api/v1/devices/{device_id}/compliance",
        # a live preview's devices, with its counts (see the report of issue 17)
        "/api/v1/changes/{change_id}/preview/live",
    }
    walked = {re.sub(r"\?.*", "", p) for p in lists(world)}
    walked = {re.sub(r"/\d+(?=/|$)", "/{id}", p) for p in walked}
    for path, operations in document["paths"].items():
        answer = operations.get("get", {}).get("responses", {}).get("200", {})
        ref = answer.get("content", {}).get("application/json", {}).get("schema", {})
        model = schemas.get(ref.get("$ref", "").rsplit("/", 1)[-1], {})
        if "items" not in model.get("properties", {}) or path in not_lists:
            continue
        assert "next" in model["properties"], f"{path} answers a list without paging"
        params = {p["name"] for p in operations["get"].get("parameters", [])}
        assert {"limit", "cursor"} <= params, f"{path} takes no limit/cursor"
        assert re.sub(r"\{[^}]+\}", "{id}", path) in walked, f"{path} is not walked here"


# ------------------------------------------------------------------- a run's results


def test_a_run_answers_counts_and_no_outputs(api: Api, app, world) -> None:
    with app.app_context():  # real outputs, as big as a config
        db.session.execute(
            DeviceResult.__table__.update()
            .where(DeviceResult.run_id == world["run"])
            .values(output=OUTPUT)
        )
        db.session.commit()
    seen: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        run = ok(api.get(f"/api/v1/runs/{world['run']}", as_="viewer"))
        page = ok(api.get(f"/api/v1/runs/{world['run']}/results?limit=500", as_="viewer"))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert "results" not in run and "description secret" not in json.dumps(run)
    assert run["summary"] == {"total": ROWS, "by_status": {"success": ROWS}, "changed": 0}
    assert run["results_url"] == f"/api/v1/runs/{world['run']}/results"
    assert "description secret" not in json.dumps(page)
    for row in page["items"]:
        assert "output" not in row and "data" not in row
        assert row["output_bytes"] == len(OUTPUT)
    # neither answer read an output from the database, only its size
    assert not [s for s in seen if "device_results_output" in s or "device_results.data" in s]

    one = ok(api.get(page["items"][0]["output_url"], as_="viewer"))
    assert one["device"] == "r0" and one["output"].count("description secret") == 2000
    assert one["status"] == "success" and one["message"] == "r0 ok (all,t0)"


def test_results_page_and_filter_by_status_and_name(api: Api, app, world) -> None:
    """A run of 1,050 devices (written as the runner writes its rows), walked 1,000 at a
    time and filtered."""
    with app.app_context():
        now = utcnow()
        rows = [
            {
                "run_id": world["run"],
                "device_id": None,
                "device_name": f"edge-{i:04d}",
                "status": "success" if i % 10 else "unreachable",
                "message": "ok" if i % 10 else "TCP 22: refused",
                "changed": i % 3 == 0,
                "connect_attempts": 1,
                "started_at": now,
                "finished_at": now,
                "duration_ms": i,
            }
            for i in range(1050)
        ]
        db.session.execute(DeviceResult.__table__.insert(), rows)
        db.session.commit()
    run = ok(api.get(f"/api/v1/runs/{world['run']}"))
    assert run["summary"]["total"] == 1050 + ROWS
    assert run["summary"]["by_status"] == {"success": 945 + ROWS, "unreachable": 105}
    assert run["summary"]["changed"] == 350

    every = walk(api, f"/api/v1/runs/{world['run']}/results", limit=1000)
    names = [r["device"] for r in every]
    assert len(names) == len(set(names)) == 1050 + ROWS and names == sorted(names)
    error(api.get(f"/api/v1/runs/{world['run']}/results?limit=1001"), 422)

    failed = walk(api, f"/api/v1/runs/{world['run']}/results?status=unreachable", limit=40)
    assert len(failed) == 105 and {r["status"] for r in failed} == {"unreachable"}
    assert failed[0] == {
        "id": failed[0]["id"],
        "device": "edge-0000",
        "device_id": None,
        "status": "unreachable",
        "message": "TCP 22: refused",
        "credential": None,
        "changed": True,
        "commit": None,
        "connect_attempts": 1,
        "started_at": failed[0]["started_at"],
        "finished_at": failed[0]["finished_at"],
        "duration_ms": 0,
        "output_bytes": None,
        "output_url": f"/api/v1/runs/{world['run']}/results/edge-0000",
    }
    any_failure = walk(api, f"/api/v1/runs/{world['run']}/results?status=any_failure")
    assert any_failure == failed
    both = ok(api.get(f"/api/v1/runs/{world['run']}/results?status=success&status=unreachable"))
    assert both["next"] is not None
    named = walk(api, f"/api/v1/runs/{world['run']}/results?device=GE-00&status=unreachable")
    assert [r["device"] for r in named] == [f"edge-00{i}0" for i in range(10)]
    like = ok(api.get(f"/api/v1/runs/{world['run']}/results?device=%25"))  # "%" is no wildcard
    assert like["items"] == []
    error(api.get(f"/api/v1/runs/{world['run']}/results?status=Not%20a%20status"), 422)


def test_one_devices_result_and_the_404s(api: Api, app, world) -> None:
    run_id = world["run"]
    with app.app_context():
        inventory.create_device(name="site/a:1", host="192.0.2.77", platform="cisco_ios",
                                tags=["all"], actor="test")  # fmt: skip
    again = ok(api.post(f"/api/v1/jobs/{world['devjob']}/runs", json={}), 201)
    drain(app)
    rows = walk(api, f"/api/v1/runs/{again['id']}/results?device=site")
    assert [r["device"] for r in rows] == ["site/a:1"]
    one = ok(api.get(rows[0]["output_url"], as_="viewer"))
    assert one["device"] == "site/a:1" and one["output"] is None and one["data"] is None

    missing = error(api.get(f"/api/v1/runs/{run_id}/results/nope"), 404)
    assert missing["message"] == f"Run #{run_id} has no result for device 'nope'."
    assert "site/a:1" not in [
        r["device"] for r in walk(api, f"/api/v1/runs/{run_id}/results")
    ]  # the device is newer than this run
    error(api.get(f"/api/v1/runs/{run_id}/results/site/a:1"), 404)
    error(api.get("/api/v1/runs/424242/results/r0"), 404)
    error(api.get("/api/v1/runs/424242/results"), 404)
    error(api.get(f"/api/v1/runs/{run_id}/results/r0", as_=None), 401)


def test_the_run_answers_of_writes_count_results_too(api: Api, app, world) -> None:
    relaunched = ok(api.post(f"/api/v1/runs/{world['run']}/relaunch"), 201)
    assert relaunched["summary"] == {"total": 0, "by_status": {}, "changed": 0}
    assert "results" not in relaunched
    cancelled = ok(api.post(f"/api/v1/runs/{relaunched['id']}/cancel"))
    assert cancelled["status"] == "CANCELLED" and cancelled["summary"]["total"] == 0
    waited = ok(api.post(f"/api/v1/jobs/{world['devjob']}/runs?wait=0.1", json={}), 201)
    assert waited["results_url"] == f"/api/v1/runs/{waited['id']}/results"
    with app.app_context():
        assert runs.result_summary(world["run"])["total"] == ROWS
    drain(app)


def test_cursors_are_opaque_text(app) -> None:
    """Unit of the cursor format: ids stay plain numbers (the older parameters take
    them), other keys round-trip through opaque text."""
    with app.app_context():
        now = utcnow()
        assert paging.encode([42]) == "42"
        text = paging.encode(["r/1 é", 7, now])
        assert re.fullmatch(r"[A-Za-z0-9_-]+", text)
        assert paging.decode(text, [str, int, type(now)]) == ("r/1 é", 7, now)
