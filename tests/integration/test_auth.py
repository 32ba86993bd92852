"""Logging in and out through the real form, with CSRF and shared throttling."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEntry, LoginFailure
from tests.conftest import csrf_token


def test_login_page_renders(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert b'name="csrf_token"' in response.data
    assert b"Log in" in response.data


@pytest.mark.parametrize("path", ["/", "/?x=1"])
def test_pages_need_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_login_and_logout(client, auth, app):
    auth.create("alice", "correct-horse", "operator")
    response = auth.login("alice", "correct-horse")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert b"alice (operator)" in home.data
    response = auth.logout()
    assert response.status_code == 302
    assert client.get("/").status_code == 302
    with app.app_context():
        actions = db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["create", "login"]


def test_user_name_is_case_insensitive(client, auth):
    auth.create("alice", "correct-horse")
    assert auth.login("ALICE", "correct-horse").status_code == 302


def test_wrong_password_is_refused_with_a_message(client, auth, app):
    auth.create("alice", "correct-horse")
    response = auth.login("alice", "wrong-password")
    assert response.status_code == 401
    assert b"Invalid user name or password." in response.data
    assert client.get("/").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LoginFailure)) == 1


def test_unknown_user_gets_the_same_message(client, auth):
    response = auth.login("nobody", "whatever-123")
    assert response.status_code == 401
    assert b"Invalid user name or password." in response.data


def test_missing_csrf_token_is_a_clear_400(client, auth):
    auth.create("alice", "correct-horse")
    response = client.post("/login", data={"username": "alice", "password": "correct-horse"})
    assert response.status_code == 400
    assert b"security token" in response.data
    assert b"Traceback" not in response.data
    assert client.get("/").status_code == 302


def test_logout_needs_csrf(client, auth):
    auth.create("alice", "correct-horse")
    auth.login("alice", "correct-horse")
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200


def test_failed_logins_are_throttled_per_user_and_address(client, auth, app):
    auth.create("alice", "correct-horse")
    limit = app.config["ROOKERY_LOGIN_MAX_FAILURES"]
    for _ in range(limit):
        assert auth.login("alice", "bad-password", REMOTE_ADDR="10.0.0.1").status_code == 401
    response = auth.login("alice", "correct-horse", REMOTE_ADDR="10.0.0.1")
    assert response.status_code == 429
    assert b"Too many failed logins" in response.data
    assert b"Try again in 30 seconds" in response.data
    assert response.headers["Retry-After"] in {"29", "30"}
    assert client.get("/").status_code == 302
    # the same user from another address is not slowed down
    assert auth.login("alice", "correct-horse", REMOTE_ADDR="10.0.0.99").status_code == 302


def test_failed_logins_are_throttled_per_address(client, auth, app):
    auth.create("alice", "correct-horse")
    app.config["ROOKERY_LOGIN_MAX_FAILURES_PER_ADDRESS"] = 6
    for i in range(6):
        assert auth.login(f"ghost{i}", "bad-password", REMOTE_ADDR="10.9.9.9").status_code == 401
    response = auth.login("alice", "correct-horse", REMOTE_ADDR="10.9.9.9")
    assert response.status_code == 429
    assert b"Too many failed logins for your address" in response.data
    # the same user from another address is not locked out
    assert auth.login("alice", "correct-horse", REMOTE_ADDR="10.1.1.1").status_code == 302


def test_throttle_is_shared_between_app_instances(database_url, tmp_path, auth, app_factory):
    """A second web process (another app on the same database) sees the same counters."""
    from tests.conftest import AuthActions, make_config

    auth.create("alice", "correct-horse")
    other = app_factory(make_config(database_url, tmp_path / "other"))
    other_auth = AuthActions(other, other.test_client())
    for _ in range(3):
        assert auth.login("alice", "bad-password").status_code == 401
    assert other_auth.login("alice", "correct-horse").status_code == 429


def test_success_clears_the_user_counter(client, auth):
    auth.create("alice", "correct-horse")
    auth.login("alice", "bad-password", REMOTE_ADDR="10.0.0.1")
    auth.login("alice", "bad-password", REMOTE_ADDR="10.0.0.2")
    assert auth.login("alice", "correct-horse", REMOTE_ADDR="10.0.0.3").status_code == 302
    auth.logout()
    auth.login("alice", "bad-password", REMOTE_ADDR="10.0.0.4")
    auth.login("alice", "bad-password", REMOTE_ADDR="10.0.0.5")
    assert auth.login("alice", "correct-horse", REMOTE_ADDR="10.0.0.6").status_code == 302


def test_disabled_user_cannot_log_in(client, auth, app):
    from app.services import users

    auth.create("alice", "correct-horse")
    with app.app_context():
        users.set_active("alice", False, actor="test")
    response = auth.login("alice", "correct-horse")
    assert response.status_code == 401
    assert b"disabled" in response.data


def test_next_parameter_stays_on_site(client, auth):
    auth.create("alice", "correct-horse")
    token = csrf_token(client)
    response = client.post(
        "/login?next=https://evil.example/x",
        data={"username": "alice", "password": "correct-horse", "csrf_token": token},
    )
    assert response.headers["Location"] == "/"


def test_empty_form_shows_field_errors(client):
    token = csrf_token(client)
    response = client.post("/login", data={"username": "", "password": "", "csrf_token": token})
    assert response.status_code == 400
    assert b"field-error" in response.data
