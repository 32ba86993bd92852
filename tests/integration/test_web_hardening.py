"""Browser-facing hardening: cookie flags, security headers, CSV formulas, NUL in the jobs form."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Job
from app.services import inventory
from tests.conftest import AuthActions, csrf_token, make_config


def _set_cookies(response) -> dict[str, str]:
    """Each Set-Cookie header of an answer, by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def _remember_login(client, username: str, password: str):
    token = csrf_token(client)
    return client.post(
        "/login",
        data={"username": username, "password": password, "remember": "y", "csrf_token": token},
    )


# ---------------------------------------------------------------------- cookies


def test_session_and_remember_cookies_are_samesite_lax_and_not_secure_by_default(client, auth):
    auth.create("olga", "operator-pw-1", "operator")
    response = _remember_login(client, "olga", "operator-pw-1")
    assert response.status_code in (302, 303)
    cookies = _set_cookies(response)
    assert {"session", "remember_token"} <= set(cookies)
    for name in ("session", "remember_token"):
        assert "SameSite=Lax" in cookies[name], cookies[name]
        assert "HttpOnly" in cookies[name], cookies[name]
        assert "Secure" not in cookies[name], cookies[name]


def test_rookery_cookie_secure_marks_both_cookies_secure(database_url, tmp_path, app_factory):
    app = app_factory(make_config(database_url, tmp_path / "secure", ROOKERY_COOKIE_SECURE=True))
    # The test client keeps Secure cookies only over https.
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    AuthActions(app, client).create("olga", "operator-pw-1", "operator")
    response = _remember_login(client, "olga", "operator-pw-1")
    assert response.status_code in (302, 303)
    cookies = _set_cookies(response)
    for name in ("session", "remember_token"):
        assert "; Secure" in cookies[name], cookies[name]
        assert "SameSite=Lax" in cookies[name], cookies[name]


# ---------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "path",
    (
        "/login",  # before login
        "/",  # a page
        "/jobs/999999",  # a 404 page
        "/static/vendor/htmx.min.js",
        "/api/v1/jobs",  # the JSON API (a 401 without a token)
        "/health",
    ),
)
def test_every_answer_carries_the_security_headers(client, auth, path):
    auth.create("vic", "viewer-pw-1", "viewer")
    auth.login("vic", "viewer-pw-1")
    with client.get(path) as response:
        headers = response.headers
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    policy = {
        part.strip().split(" ", 1)[0]: part.strip()
        for part in headers["Content-Security-Policy"].split(";")
    }
    assert policy["script-src"] == "script-src 'self'"
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert policy["object-src"] == "object-src 'none'"


def test_no_page_carries_inline_script(client, auth):
    """script-src 'self' would block it: scripts live in app/static."""
    auth.create("ada", "admin-password-1", "admin")
    auth.login("ada", "admin-password-1")
    for path in ("/", "/jobs", "/jobs/new", "/runs", "/devices", "/credentials", "/users"):
        page = client.get(path).get_data(as_text=True).lower()
        for tag in page.split("<script")[1:]:
            assert tag.lstrip().startswith("src="), f"inline <script> on {path}"
        assert " onclick=" not in page and "hx-on" not in page and "javascript:" not in page


# ---------------------------------------------------------------------- CSV exports

FORMULAS = ['=HYPERLINK("http://127.0.0.1/x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_csv_cells_that_start_a_formula_are_neutralised(ctx):
    inventory.create_device(
        actor="test",
        name="-r1",
        host="10.0.0.1",
        platform="cisco_ios",
        tags=['=HYPERLINK("http://127.0.0.1/t")'],
        notes='=HYPERLINK("http://127.0.0.1/x","click")',
    )
    text = inventory.export_csv()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["name"] == "'-r1"
    assert rows[0]["tags"] == '\'=HYPERLINK("http://127.0.0.1/t")'
    assert rows[0]["notes"] == '\'=HYPERLINK("http://127.0.0.1/x","click")'
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value


@pytest.mark.parametrize("notes", FORMULAS)
def test_every_formula_start_is_neutralised(ctx, notes):
    inventory.create_device(
        actor="test", name="r1", host="10.0.0.1", platform="cisco_ios", tags=[], notes="x"
    )
    inventory.get_by_name("r1").notes = notes
    db.session.commit()
    row = next(csv.DictReader(io.StringIO(inventory.export_csv())))
    assert row["notes"] == "'" + notes


@pytest.mark.parametrize(
    "notes", [*FORMULAS[:4], "'=quoted", "''+two", "'plain", "plain", "lone\rcarriage return"]
)
def test_neutralised_cells_import_back_exactly(ctx, notes):
    """The quote is for spreadsheets only: an export imports back to the same values."""
    inventory.create_device(
        actor="test", name="r1", host="10.0.0.1", platform="cisco_ios", tags=[], notes="x"
    )
    device = inventory.get_by_name("r1")
    device.notes = notes
    db.session.commit()
    exported = inventory.export_csv()
    device.notes = "changed"
    db.session.commit()
    report = inventory.import_csv(exported, actor="test")
    assert (report.updated, report.errors) == (1, [])
    db.session.expire_all()
    assert inventory.get_by_name("r1").notes == notes
    assert inventory.export_csv() == exported


def test_the_export_pages_neutralise_formulas(app, client, auth):
    with app.app_context():
        inventory.create_device(
            actor="test",
            name="r1",
            host="10.0.0.1",
            platform="cisco_ios",
            notes='=HYPERLINK("http://127.0.0.1/x")',
        )
    auth.create("vic", "viewer-pw-1", "viewer")
    auth.login("vic", "viewer-pw-1")
    page = client.get("/devices/export.csv").get_data(as_text=True)
    assert "'=HYPERLINK" in page and ",=HYPERLINK" not in page


# ---------------------------------------------------------------------- the jobs form


@pytest.mark.parametrize(
    "job_type, field",
    (
        ("writer", "name"),
        ("writer", "description"),
        ("writer", "labels"),
        ("writer", "p_tag"),
        ("devjob", "target_tags"),
        ("devjob", "target_devices"),
    ),
)
def test_the_jobs_form_refuses_a_nul_byte_next_to_its_field(app, client, auth, job_type, field):
    auth.create("olga", "operator-pw-1", "operator")
    auth.login("olga", "operator-pw-1")
    form = {
        "job_type": job_type,
        "name": "nightly",
        "p_tag": "t1",
        "p_mode": "ok",
        "schedule_kind": "none",
        "timezone": "UTC",
        field: "a\x00b",
        "csrf_token": csrf_token(client, f"/jobs/new?job_type={job_type}"),
    }
    created = client.post("/jobs/new", data=form)
    assert created.status_code == 422
    assert f'id="error-{field}"' in created.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 0
    # The same on the edit form of a job that exists (a device job names real targets).
    with app.app_context():
        inventory.create_device(
            name="fine", host="192.0.2.1", platform="cisco_ios", tags=["fine"], actor="t"
        )
    form.update({field: "fine", "name": "nightly"})
    assert client.post("/jobs/new", data=form).status_code == 302
    with app.app_context():
        job_id = db.session.scalar(select(Job.id))
    form[field] = "a\x00b"
    edited = client.post(f"/jobs/{job_id}/edit", data=form)
    assert edited.status_code == 422
    assert f'id="error-{field}"' in edited.get_data(as_text=True)
