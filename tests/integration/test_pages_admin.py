"""Admin pages (users, audit trail) and who may use which page, through the test client."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import AuditEntry, Credential, Device, Tag, User
from app.services import credentials, inventory
from tests.conftest import csrf_token


def login(auth, role: str = "admin", name: str | None = None) -> None:
    name = name or role
    auth.create(name, "correct-horse", role)
    assert auth.login(name, "correct-horse").status_code == 302


def post(client, path: str, data: dict | None = None):
    token = csrf_token(client, "/")
    return client.post(path, data={"csrf_token": token, **(data or {})})


def user_id(app, name: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.username == name))


# -------------------------------------------------------------------------- users


def test_users_page_create_change_role_disable_enable(client, auth, app):
    login(auth)
    page = client.get("/users")
    assert page.status_code == 200 and b"admin" in page.data and b"(you)" in page.data
    created = post(
        client, "/users", {"username": "Bob", "password": "long-enough", "role": "viewer"}
    )
    assert created.status_code == 302
    assert b"User bob created (viewer)." in client.get("/users").data
    bob = user_id(app, "bob")
    assert post(client, f"/users/{bob}/role", {"role": "operator"}).status_code == 302
    assert post(client, f"/users/{bob}/active", {"active": "0"}).status_code == 302
    with app.app_context():
        user = db.session.get(User, bob)
        assert (user.role, user.active) == ("operator", False)
    page = client.get("/users").get_data(as_text=True)
    assert f'id="toggle-user-{bob}"' in page and ">Enable<" in page
    auth.logout()
    refused = auth.login("bob", "long-enough")
    assert refused.status_code == 401 and b"disabled" in refused.data
    auth.login("admin", "correct-horse")
    assert post(client, f"/users/{bob}/active", {"active": "1"}).status_code == 302
    auth.logout()
    assert auth.login("bob", "long-enough").status_code == 302


def test_user_form_errors_keep_the_input(client, auth, app):
    login(auth)
    short = post(client, "/users", {"username": "carol", "password": "short", "role": "operator"})
    body = short.get_data(as_text=True)
    assert short.status_code == 422
    assert 'id="error-password"' in body and 'value="carol"' in body
    assert '<option value="operator" selected>' in body and "short" not in body.split("<main")[1]
    empty = post(client, "/users", {})
    assert empty.status_code == 422 and b'id="error-username"' in empty.data
    long = post(client, "/users", {"username": "x" * 500, "password": "long-enough"})
    assert long.status_code == 422 and b'id="error-username"' in long.data
    role = post(client, "/users", {"username": "dave", "password": "long-enough", "role": "god"})
    assert role.status_code == 422 and b'id="error-role"' in role.data
    assert (
        post(
            client, "/users", {"username": "erin", "password": "long-enough", "role": "viewer"}
        ).status_code
        == 302
    )
    again = post(
        client, "/users", {"username": "ERIN", "password": "long-enough", "role": "viewer"}
    )
    assert again.status_code == 409 and b"already exists" in again.data
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 2


def test_admin_cannot_lock_themselves_out(client, auth, app):
    login(auth)
    me = user_id(app, "admin")
    role = post(client, f"/users/{me}/role", {"role": "viewer"})
    assert role.status_code == 409 and b"your own role" in role.data
    disable = post(client, f"/users/{me}/active", {"active": "0"})
    assert disable.status_code == 409 and b"your own account" in disable.data
    auth.create("frank", "correct-horse", "viewer")
    bad = post(client, f"/users/{user_id(app, 'frank')}/role", {"role": "root"})
    assert bad.status_code == 422 and b"Unknown role" in bad.data
    with app.app_context():
        assert db.session.get(User, me).role == "admin"


@pytest.mark.parametrize("path", ["/users/999999/role", "/users/999999/active"])
def test_unknown_user_is_a_404_page(client, auth, path):
    login(auth)
    response = post(client, path, {"role": "viewer", "active": "0"})
    assert response.status_code == 404 and b"No user #999999." in response.data


# -------------------------------------------------------------------------- audit


def bulk_audit(app, n: int) -> None:
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, object_type, object_id, summary)"
                " SELECT timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',"
                " CASE WHEN g % 3 = 0 THEN 'mallory' ELSE 'trent' END,"
                " CASE WHEN g % 2 = 0 THEN 'update' ELSE 'create' END,"
                " 'device', g::text, 'bulk entry ' || g FROM generate_series(1, :n) g"
            ),
            {"n": n},
        )
        db.session.commit()


def test_audit_trail_filters_and_pages_through_thousands(client, auth, app):
    bulk_audit(app, 3000)
    login(auth)
    page = client.get("/audit")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "admin logged in" in body and 'id="next-page"' in body
    assert body.count('<tr id="audit-') == 50
    older = re.search(r'href="([^"]+)" id="next-page"', body).group(1).replace("&amp;", "&")
    second = client.get(older).get_data(as_text=True)
    assert second.count('<tr id="audit-') == 50 and "&larr; Newer" in second
    mallory = client.get("/audit?actor=Mallory&action=update&object_type=device")
    rows = re.findall(r"bulk entry (\d+)", mallory.get_data(as_text=True))
    assert len(rows) == 50 and all(int(g) % 6 == 0 for g in rows)
    day = client.get("/audit?since=2026-01-01&until=2026-01-01").get_data(as_text=True)
    assert "bulk entry 1439" in day  # 23:59, the newest of that day, first
    assert "bulk entry 1440" not in day  # 2026-01-02 00:00
    none = client.get("/audit?actor=nobody")
    assert none.status_code == 200 and b'id="no-audit"' in none.data
    partial = client.get("/audit?actor=nobody", headers={"HX-Request": "true"})
    assert partial.get_data(as_text=True).lstrip().startswith('<div id="audit-entries"')
    bad = client.get("/audit?since=yesterday&before=abc")
    assert bad.status_code == 400 and b'id="error-since"' in bad.data
    assert b'value="yesterday"' in bad.data


def test_audit_records_page_changes_with_secrets_redacted(client, auth, app):
    login(auth)
    post(
        client,
        "/credentials/new",
        {"name": "lab", "username": "netops", "password": "Pa55-w0rd-XYZ", "tags": "core"},
    )
    page = client.get("/audit?object_type=credential").get_data(as_text=True)
    assert "created credential lab for user netops" in page
    assert "Pa55-w0rd-XYZ" not in page
    with app.app_context():
        entry = db.session.scalars(
            select(AuditEntry).where(AuditEntry.object_type == "credential")
        ).one()
        assert entry.actor == "admin"


# ------------------------------------------------------------------ access control

READ_PAGES = ["/devices", "/devices/tags", "/devices/export.csv", "/credentials", "/job-types"]
ADMIN_PAGES = ["/users", "/audit", "/credentials/new", "/credentials/1/edit"]
OPERATOR_PAGES = ["/devices/new", "/devices/1/edit", "/devices/import"]
POSTS = [
    "/devices/new",
    "/devices/1/edit",
    "/devices/1/delete",
    "/devices/import",
    "/devices/tags/1/rename",
    "/devices/tags/1/delete",
    "/credentials/new",
    "/credentials/1/edit",
    "/credentials/1/delete",
    "/users",
    "/users/1/role",
    "/users/1/active",
]
ADMIN_POSTS = [p for p in POSTS if p.startswith(("/credentials", "/users"))]


@pytest.fixture
def inventory_rows(app):
    """One device, tag and credential with id 1, so a refusal is not a 404."""
    with app.app_context():
        device = inventory.create_device(
            name="r1", host="10.0.0.1", platform="cisco_ios", tags=["core"], actor="t"
        )
        cred = credentials.create_credential("lab", "u", "Pa55-w0rd-XYZ", tags=["core"], actor="t")
        tag = db.session.scalar(select(Tag.id).where(Tag.name == "core"))
        return device.id, cred.id, tag


def _ids(path: str, ids: tuple[int, int, int]) -> str:
    device, cred, tag = ids
    return (
        path.replace("/devices/1/", f"/devices/{device}/")
        .replace("/credentials/1/", f"/credentials/{cred}/")
        .replace("/tags/1/", f"/tags/{tag}/")
    )


@pytest.mark.parametrize("path", READ_PAGES + ADMIN_PAGES + OPERATOR_PAGES)
def test_pages_need_login(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", READ_PAGES)
def test_a_viewer_reads(client, auth, path, inventory_rows):
    login(auth, "viewer")
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("role", ["viewer", "operator"])
@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_are_refused_to_others(client, auth, role, path, inventory_rows):
    login(auth, role)
    assert client.get(_ids(path, inventory_rows)).status_code == 403


@pytest.mark.parametrize("path", OPERATOR_PAGES)
def test_operator_forms_are_refused_to_viewers(client, auth, path, inventory_rows):
    login(auth, "viewer")
    assert client.get(_ids(path, inventory_rows)).status_code == 403


@pytest.mark.parametrize("path", POSTS)
def test_a_viewer_gets_403_on_every_post(client, auth, app, path, inventory_rows):
    login(auth, "viewer")
    response = post(client, _ids(path, inventory_rows), {"name": "x", "role": "admin"})
    assert response.status_code == 403
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Device)) == 1
        assert db.session.scalar(select(func.count()).select_from(Credential)) == 1
        assert db.session.scalar(select(User.role).where(User.username == "viewer")) == "viewer"


@pytest.mark.parametrize("path", ADMIN_POSTS)
def test_an_operator_gets_403_on_admin_posts(client, auth, path, inventory_rows):
    login(auth, "operator")
    response = post(client, _ids(path, inventory_rows), {"name": "x", "role": "admin"})
    assert response.status_code == 403


def test_nav_and_buttons_follow_the_role(client, auth, inventory_rows):
    login(auth, "operator")
    home = client.get("/devices").get_data(as_text=True)
    assert 'id="new-device"' in home and 'id="nav-users"' not in home
    creds = client.get("/credentials").get_data(as_text=True)
    assert 'id="new-credential"' not in creds and ">Edit<" not in creds
