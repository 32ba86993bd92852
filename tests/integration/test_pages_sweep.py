"""Every GET page and API route, fed odd ids and odd query strings, answers without a 500.

The routes come from the app's own URL map, so a new page is swept the day it is
added. Each is asked as an admin (who may see everything) with: an id that exists,
ids that do not (0, one past int4, one past int8), and query strings a person could
type or a stale bookmark could carry (words where numbers go, impossible dates,
negative and huge numbers, NUL bytes). A 4xx or a page with a message is fine; a 500
is a traceback someone would see.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select
from werkzeug.routing import Rule

from app.extensions import db
from app.models import Credential, Device, Job, JobRun, Schedule, Tag, User
from app.services import credentials, inventory, runs, schedules, webhooks
from tests.conftest import csrf_token
from tests.integration.helpers import drain, fill, make_job

#: Streams never end on their own: tests/integration/test_live.py tests them.
STREAMING = {"runs.stream", "runs.index_stream", "api.stream_run"}

ODD_IDS = ["0", str(2**31), str(2**63), "99999999999999999999999"]

ODD_VALUES = [
    "",
    "abc",
    "-1",
    "0",
    "99999999999999999999999",
    "2026-13-45",
    "\x00",
    "' OR 1=1 --",
    "x" * 500,
]

#: Every query key some view reads (grep request.args), plus the API's own.
QUERY_KEYS = [
    "status",
    "job_type",
    "job_id",
    "job",
    "date",
    "day",
    "days",
    "before",
    "after",
    "since",
    "until",
    "limit",
    "page",
    "per_page",
    "q",
    "tag",
    "tags",
    "label",
    "level",
    "old",
    "new",
    "actor",
    "object_type",
    "action",
    "format",
    "kinds",
    "event_types",
    "next",
]


@pytest.fixture
def admin_client(app, client, auth):
    auth.create("ada", "admin-password-1", "admin")
    assert auth.login("ada", "admin-password-1").status_code in (302, 303)
    return client


@pytest.fixture
def known_ids(app, admin_client) -> dict[str, str]:
    """One of everything, so that the routes with ids have something real to show."""
    with app.app_context():
        device = inventory.create_device(
            actor="test", name="r1", host="127.0.0.1", platform="cisco_ios", tags=["core"]
        )
        credential = credentials.create_credential("lab", "netops", "pw-not-shown", actor="test")
        job = make_job("sweep", "writer")
        schedule = schedules.create_schedule(job, kind="interval", interval_minutes=60)
        webhook, _ = webhooks.create_webhook(
            job.id, "https://hooks.example.net/hook", [webhooks.FAILURE], actor="test"
        )
        run = runs.start_run(job, triggered_by="test")
        ids = {
            "device_id": str(device.id),
            "credential_id": str(credential.id),
            "job_id": str(job.id),
            "schedule_id": str(schedule.id),
            "webhook_id": str(webhook.id),
            "run_id": str(run.id),
        }
        drain(app)
        db.session.remove()
    return ids


def get_rules(app) -> Iterator[Rule]:
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if "GET" in rule.methods and rule.endpoint not in STREAMING and rule.endpoint != "static":
            yield rule


def assert_no_500(client, url: str) -> None:
    response = client.get(url, headers={"Accept": "text/html"})
    assert response.status_code < 500, f"GET {url!r} answered {response.status_code}"
    assert "Traceback" not in response.get_data(as_text=True), f"GET {url!r} shows a traceback"


def test_every_route_answers_odd_ids_without_a_500(app, admin_client, known_ids):
    rules = list(get_rules(app))
    assert len(rules) > 40, "the sweep lost the app's routes"
    for rule in rules:
        assert_no_500(admin_client, fill(rule, known_ids, None))
        if "<" in rule.rule:
            for odd in ODD_IDS:
                assert_no_500(admin_client, fill(rule, known_ids, odd))


def test_every_route_answers_odd_query_strings_without_a_500(app, admin_client, known_ids):
    for rule in get_rules(app):
        path = fill(rule, known_ids, None)
        for value in ODD_VALUES:
            assert_no_500(admin_client, path + "?" + urlencode({k: value for k in QUERY_KEYS}))
        if rule.rule.startswith("/api/"):
            continue  # the API's parameters one by one: test_api_schemathesis.py
        for key in QUERY_KEYS:  # one odd key at a time reaches checks the others cut short
            for value in ("abc", "99999999999999999999999"):
                assert_no_500(admin_client, path + "?" + urlencode({key: value}))


def test_the_sweep_reaches_real_pages(app, admin_client, known_ids):
    """The sweep above is only worth something if the known ids really show pages."""
    for path in ("/devices/{device_id}", "/jobs/{job_id}", "/runs/{run_id}"):
        page = admin_client.get(path.format(**known_ids))
        assert page.status_code == 200, path
    api = admin_client.get("/api/v1/runs/{run_id}".format(**known_ids))
    assert api.status_code == 200 and api.get_json()["status"] == "COMPLETED_SUCCESS"


FIELD_RE = re.compile(r'<(?:input|select|textarea)\b[^>]*\bname="([^"]+)"')

#: Pages whose forms post elsewhere (buttons on a list or detail page, the job form once
#: a type is picked): their fields go to every action that has no page of its own.
FORM_PAGES = [
    "/jobs/new?job_type=writer",
    "/jobs/{job_id}",
    "/runs/{run_id}",
    "/devices/tags",
    "/devices/{device_id}",
    "/users",
    "/tokens",
    "/credentials",
    "/devices/new",
]


def post_rules(app) -> list[Rule]:
    rules = [
        rule
        for rule in app.url_map.iter_rules()
        if "POST" in rule.methods
        and not rule.rule.startswith("/api/")
        and rule.endpoint not in ("auth.logout", "auth.login")  # login: test_auth.py
    ]
    # what deletes the known records goes last, so every other form finds them
    return sorted(rules, key=lambda r: (r.rule.endswith(("/delete", "/revoke")), r.rule))


def fields_on(client, path: str) -> set[str]:
    page = client.get(path)
    names = set(FIELD_RE.findall(page.get_data(as_text=True))) if page.status_code == 200 else set()
    return names - {"csrf_token"}


@pytest.mark.parametrize("odd", ["a\x00b", "99999999999999999999999", "-1", "x" * 5000])
def test_every_form_answers_odd_fields_without_a_500(app, admin_client, known_ids, odd):
    """Each form's fields (read from its page's HTML), all set to one odd value."""
    rules = post_rules(app)
    assert len(rules) > 15, "the sweep lost the app's forms"
    every_field = set().union(*(fields_on(admin_client, p.format(**known_ids)) for p in FORM_PAGES))
    assert {"name", "host", "job_type", "role", "priority"} <= every_field
    for rule in rules:
        path = fill(rule, known_ids, None)
        names = fields_on(admin_client, path) or every_field
        data = {name: odd for name in names}
        if path == "/jobs/new":  # a known type, so the odd values reach the job's checks
            data["job_type"] = "writer"
        data["csrf_token"] = csrf_token(admin_client, "/")
        response = admin_client.post(path, data=data)
        assert response.status_code < 500, f"POST {path} {sorted(names)} answered 500"
        body = response.get_data(as_text=True)
        assert "Traceback" not in body, f"POST {path} shows a traceback"


def test_a_viewer_is_refused_every_change(app, client, auth, known_ids):
    """Every form a viewer could post is a 403 that changes nothing; their own API tokens
    and their own password are the things a viewer manages."""
    counted = (Device, Job, JobRun, Credential, Tag, Schedule, User)

    def counts() -> list[int]:
        with app.app_context():
            return [db.session.scalar(select(func.count()).select_from(m)) for m in counted]

    before = counts()
    auth.create("vic", "viewer-password-1", "viewer")
    auth.logout()  # known_ids logged the admin in on this client
    auth.login("vic", "viewer-password-1")
    own = {"tokens.create", "tokens.revoke", "auth.password"}  # the password: test_sessions
    for rule in post_rules(app):
        if rule.endpoint in own:
            continue
        path = fill(rule, known_ids, None)
        response = client.post(path, data={"csrf_token": csrf_token(client, "/")})
        assert response.status_code == 403, (
            f"a viewer's POST {path} answered {response.status_code}"
        )
    assert counts() == [n + (m is User) for n, m in zip(before, counted, strict=True)]
