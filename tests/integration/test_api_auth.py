"""API access: tokens, roles, sessions, and bad input that must be a clear 4xx."""

from __future__ import annotations

import pytest

from app.services import tokens, users
from tests.integration.helpers import fill
from tests.integration.test_api_support import PASSWORD, Api, error, make_tokens, ok

READS = (
    "/api/v1/job-types",
    "/api/v1/me",
    "/api/v1/jobs",
    "/api/v1/runs",
    "/api/v1/logs",
    "/api/v1/devices",
    "/api/v1/tags",
    "/api/v1/credentials",
    "/api/v1/schedules",
    "/api/v1/statistics",
    "/api/v1/exports",
)
#: (method, path, body, least role)
WRITES = (
    ("POST", "/api/v1/jobs", {"name": "j", "job_type": "writer"}, "operator"),
    (
        "POST",
        "/api/v1/devices",
        {"name": "r1", "host": "10.0.0.1", "platform": "cisco_ios"},
        "operator",
    ),
    ("POST", "/api/v1/imports", {"format": "csv", "csv": "name,host,platform\n"}, "operator"),
    ("POST", "/api/v1/credentials", {"name": "c", "username": "u", "password": "p"}, "admin"),
)


@pytest.fixture
def api(app, client) -> Api:
    return Api(client=client, tokens=make_tokens(app))


def test_openapi_document_needs_no_token(api: Api) -> None:
    document = ok(api.get("/api/v1/openapi.json", as_=None))
    assert document["openapi"].startswith("3.")
    assert "/api/v1/jobs/{job_id}/runs" in document["paths"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("path", READS)
def test_reads_need_a_token(api: Api, path: str) -> None:
    response = api.get(path, as_=None)
    error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("role", ("viewer", "operator", "admin"))
def test_every_role_reads(api: Api, path: str, role: str) -> None:
    ok(api.get(path, as_=role))


@pytest.mark.parametrize(("method", "path", "body", "least"), WRITES)
@pytest.mark.parametrize("role", ("viewer", "operator", "admin"))
def test_writes_need_the_role(api: Api, method, path, body, least, role) -> None:
    response = api.call(method, path, json=body, as_=role)
    rank = ("viewer", "operator", "admin")
    if rank.index(role) < rank.index(least):
        body = error(response, 403)
        assert least in body["message"]
    else:
        assert response.status_code in (200, 201, 422), response.get_data(as_text=True)


def test_audit_is_for_admins(api: Api) -> None:
    error(api.get("/api/v1/audit", as_="viewer"), 403)
    error(api.get("/api/v1/audit", as_="operator"), 403)
    items = ok(api.get("/api/v1/audit", as_="admin"))["items"]
    assert any(item["object_type"] == "api_token" for item in items)


@pytest.mark.parametrize(
    "header", ("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer rk_nope_nope", "Token x")
)
def test_bad_authorization_headers_are_401(api: Api, header: str) -> None:
    error(api.get("/api/v1/jobs", as_=None, headers={"Authorization": header}), 401)


def test_a_revoked_token_is_refused(api: Api, app) -> None:
    ok(api.get("/api/v1/me", as_="viewer"))
    with app.app_context():
        tokens.revoke_token(api.tokens["viewer"].split("_")[1], actor="test")
    error(api.get("/api/v1/me", as_="viewer"), 401)


def test_a_disabled_user_token_is_refused(api: Api, app) -> None:
    with app.app_context():
        users.set_active("operator", False, actor="test")
    error(api.get("/api/v1/me", as_="operator"), 401)


def test_me_names_the_token_owner(api: Api) -> None:
    assert ok(api.get("/api/v1/me", as_="operator")) == {
        "id": ok(api.get("/api/v1/me", as_="operator"))["id"],
        "username": "operator",
        "role": "operator",
    }


def test_a_session_reads_but_never_writes(api: Api, auth) -> None:
    """A logged-in browser may GET; anything that changes something needs a token (no CSRF)."""
    auth.login("operator", PASSWORD)
    assert ok(api.get("/api/v1/me", as_=None))["username"] == "operator"
    response = api.post(
        "/api/v1/devices",
        json={"name": "r1", "host": "10.0.0.1", "platform": "cisco_ios"},
        as_=None,
    )
    error(response, 401)
    assert ok(api.get("/api/v1/devices", as_=None))["items"] == []


def test_malformed_json_is_400(api: Api) -> None:
    response = api.post(
        "/api/v1/devices", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert error(response, 400)["message"] == "The body is not valid JSON."


def test_a_body_that_is_not_json_is_415(api: Api) -> None:
    response = api.post("/api/v1/devices", data="name=r1", content_type="text/plain")
    error(response, 415)


@pytest.mark.parametrize("body", ("[]", "null", "3", '"text"'))
def test_a_body_that_is_not_an_object_is_422(api: Api, body: str) -> None:
    response = api.post("/api/v1/devices", data=body, content_type="application/json")
    error(response, 422)


def test_unknown_fields_are_named(api: Api) -> None:
    body = error(
        api.post(
            "/api/v1/devices",
            json={"name": "r1", "host": "10.0.0.1", "platform": "cisco_ios", "colour": "red"},
        ),
        422,
    )
    assert "colour" in body["fields"]
    assert ok(api.get("/api/v1/devices"))["items"] == []


def test_wrong_types_are_named(api: Api) -> None:
    body = error(
        api.post(
            "/api/v1/devices",
            json={"name": "r1", "host": "10.0.0.1", "platform": "cisco_ios", "port": "22"},
        ),
        422,
    )
    assert "port" in body["fields"]


def test_nul_characters_and_nan_are_refused(api: Api) -> None:
    body = error(api.post("/api/v1/jobs", json={"name": "a\x00b", "job_type": "writer"}), 422)
    assert body["fields"]
    response = api.post(
        "/api/v1/jobs",
        data='{"name": "x", "job_type": "writer", "params": {"n": NaN}}',
        content_type="application/json",
    )
    assert "params.n" in error(response, 422)["fields"]
    error(api.get("/api/v1/devices?search=a%00b"), 422)


@pytest.mark.parametrize(
    "path", ("/api/v1/jobs/0", "/api/v1/jobs/99999999999999", "/api/v1/runs/7", "/api/v1/nope")
)
def test_unknown_things_are_404_json(api: Api, path: str) -> None:
    error(api.get(path), 404)


def test_bad_query_values_are_422(api: Api) -> None:
    assert "limit" in error(api.get("/api/v1/runs?limit=0"), 422)["fields"]
    assert "since" in error(api.get("/api/v1/logs?since=yesterday"), 422)["fields"]
    assert "level" in error(api.get("/api/v1/logs?level=loud"), 422)["fields"]


def test_a_viewer_token_is_refused_every_api_write(api: Api, app) -> None:
    """Every write route in the URL map, so a new one without its role check fails here."""
    own = {"/api/v1/account/password"}  # a viewer's own password: test_sessions.py
    writes = [
        (method, rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/") and rule.rule not in own
        for method in sorted(rule.methods & {"POST", "PUT", "PATCH", "DELETE"})
    ]
    assert len(writes) > 15, "the sweep lost the API's write routes"
    for method, rule in writes:
        path = fill(rule, {}, None)
        response = api.call(method, path, json={}, as_="viewer")
        assert response.status_code == 403, f"a viewer's {method} {path}: {response.status_code}"
        message = response.get_json()["message"]
        assert "operator" in message or "admin" in message, message
