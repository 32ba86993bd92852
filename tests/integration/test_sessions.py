"""Sessions that end, and passwords that change (issue 13 item 6).

Logout, disable, a role change and a password change (your own, or reset by an admin
on the users page, the API or ``rookery user password``) raise the person's session
version: every session cookie and remember-me cookie made before stops working, in
every browser, and enabling the user again does not bring any of them back.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask_login.utils import encode_cookie
from sqlalchemy import func, select

from app.cli import cli
from app.extensions import db
from app.models import AuditEntry, LoginFailure, User
from app.services import tokens, users
from tests.conftest import AuthActions, csrf_token
from tests.integration.test_api_support import PASSWORD, Api, error, make_tokens, ok

SESSION = "session"
REMEMBER = "remember_token"


# ------------------------------------------------------------------------ helpers


def login(app, client, name: str, password: str = "correct-horse", *, remember: bool = False):
    data = {"username": name, "password": password, "csrf_token": csrf_token(client)}
    if remember:
        data["remember"] = "y"
    response = client.post("/login", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def cookie(client, name: str) -> str:
    found = client.get_cookie(name)
    assert found is not None, f"no {name} cookie"
    return found.value


def browser(app, **cookies: str):
    """A new browser holding only these cookies (a copy someone took)."""
    other = app.test_client()
    for name, value in cookies.items():
        other.set_cookie(name, value)
    return other


def logged_in(client) -> bool:
    """Whether this browser is logged in: the dashboard, or a redirect to the login."""
    response = client.get("/")
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 302:
        assert response.headers["Location"].startswith("/login")
    return response.status_code == 200


def post(client, path: str, data: dict | None = None):
    return client.post(path, data={"csrf_token": csrf_token(client, "/"), **(data or {})})


def user_row(app, name: str) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == name))
        assert user is not None
        db.session.expunge(user)
        return user


def audit_rows(app) -> list[AuditEntry]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def assert_no_secret_in_audit(app, *secrets: str) -> None:
    for row in audit_rows(app):
        text = f"{row.summary} {row.before} {row.after}"
        for secret in secrets:
            assert secret not in text, f"a password in the audit trail: {text}"


@pytest.fixture
def alice(auth):
    auth.create("alice", "correct-horse", "operator")
    return "alice"


@pytest.fixture
def admin_browser(app, auth):
    """A second browser, logged in as an admin."""
    auth.create("root", "admin-horse-1", "admin")
    other = app.test_client()
    login(app, other, "root", "admin-horse-1")
    return other


# ------------------------------------------------------------------ logout, cookies


def test_a_session_cookie_replayed_after_logout_is_refused(app, client, auth, alice):
    login(app, client, alice)
    taken = cookie(client, SESSION)
    assert logged_in(browser(app, session=taken))  # the copy works while logged in...
    assert auth.logout().status_code == 302
    copy = browser(app, session=taken)
    assert not logged_in(copy)  # ...and not after the logout
    assert copy.get("/api/v1/me").status_code == 401


def test_a_remember_cookie_after_logout_is_refused(app, client, auth, alice):
    login(app, client, alice, remember=True)
    taken = cookie(client, REMEMBER)
    assert logged_in(browser(app, remember_token=taken))
    auth.logout()
    assert not logged_in(browser(app, remember_token=taken))
    assert not logged_in(browser(app, remember_token=taken))  # not on the second try either


def test_logout_ends_every_session_of_that_person(app, client, auth, alice):
    other = app.test_client()
    login(app, other, alice, remember=True)
    kept = cookie(other, REMEMBER)
    login(app, client, alice)
    auth.logout()
    assert not logged_in(other)
    assert not logged_in(browser(app, remember_token=kept))
    login(app, other, alice)  # a new login works at once
    assert logged_in(other)


def test_the_remember_cookie_differs_between_logins_and_lasts_30_days(app, client, auth, alice):
    login(app, client, alice, remember=True)
    first = cookie(client, REMEMBER)
    expires = client.get_cookie(REMEMBER).expires  # Flask-Login's own default: 365 days
    assert expires is not None
    assert timedelta(days=29) < expires - datetime.now(UTC) < timedelta(days=31)
    auth.logout()
    login(app, client, alice, remember=True)
    second = cookie(client, REMEMBER)
    assert second != first
    assert logged_in(browser(app, remember_token=second))
    assert not logged_in(browser(app, remember_token=first))


def test_cookies_of_the_old_form_and_too_old_logins_are_refused(app, alice):
    """A bare id (cookies made before the upgrade) or a login older than the remember
    duration logs nobody in, however well signed."""
    user = user_row(app, alice)
    now = int(time.time())
    too_old = now - int(timedelta(days=31).total_seconds())
    with app.test_request_context():
        fresh = encode_cookie(f"{user.id}:{user.session_version}:{now}")
        bare = encode_cookie(str(user.id))
        stale = encode_cookie(f"{user.id}:{user.session_version}:{too_old}")
        other_version = encode_cookie(f"{user.id}:{user.session_version + 1}:{now}")
        forged = f"{user.id}:{user.session_version}:{now}|{'0' * 128}"
    assert logged_in(browser(app, remember_token=fresh))  # the control: the form works
    for value in (bare, stale, other_version, forged):
        assert not logged_in(browser(app, remember_token=value)), value


# -------------------------------------------------------------- disable, role


def test_disable_then_enable_brings_no_old_cookie_back(app, client, alice):
    login(app, client, alice, remember=True)
    session_cookie, remember_cookie = cookie(client, SESSION), cookie(client, REMEMBER)
    with app.app_context():
        users.set_active(alice, False, actor="test")
    assert not logged_in(client)
    with app.app_context():
        users.set_active(alice, True, actor="test")
    assert not logged_in(browser(app, session=session_cookie))
    assert not logged_in(browser(app, remember_token=remember_cookie))
    assert not logged_in(browser(app, session=session_cookie, remember_token=remember_cookie))
    login(app, client, alice)  # enabled: a new login works
    assert logged_in(client)


def test_disable_and_enable_on_the_users_page_end_sessions(app, client, alice, admin_browser):
    login(app, client, alice, remember=True)
    remember_cookie = cookie(client, REMEMBER)
    alice_id = user_row(app, alice).id
    assert post(admin_browser, f"/users/{alice_id}/active", {"active": "0"}).status_code == 302
    assert post(admin_browser, f"/users/{alice_id}/active", {"active": "1"}).status_code == 302
    assert not logged_in(client)
    assert not logged_in(browser(app, remember_token=remember_cookie))


def test_a_role_change_ends_the_old_sessions(app, client, alice, admin_browser):
    login(app, client, alice, remember=True)
    remember_cookie = cookie(client, REMEMBER)
    assert b"alice (operator)" in client.get("/").data
    alice_id = user_row(app, alice).id
    assert post(admin_browser, f"/users/{alice_id}/role", {"role": "viewer"}).status_code == 302
    assert not logged_in(client)
    assert not logged_in(browser(app, remember_token=remember_cookie))
    login(app, client, alice)
    assert b"alice (viewer)" in client.get("/").data


def test_the_same_role_again_keeps_the_sessions(app, client, alice):
    login(app, client, alice)
    with app.app_context():
        users.set_role(alice, "operator", actor="test")
    assert logged_in(client)


# ------------------------------------------------------------ your own password


def change_password(client, current: str, new: str, confirm: str | None = None, **environ):
    data = {
        "current_password": current,
        "new_password": new,
        "confirm_password": new if confirm is None else confirm,
        "csrf_token": csrf_token(client, "/account/password"),
    }
    return client.post("/account/password", data=data, environ_base=environ)


def test_the_password_page_is_linked_and_needs_a_login(app, client, alice):
    response = client.get("/account/password")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    login(app, client, alice)
    assert 'id="nav-password"' in client.get("/").get_data(as_text=True)
    page = client.get("/account/password").get_data(as_text=True)
    assert 'name="current_password"' in page and 'name="new_password"' in page
    assert 'name="confirm_password"' in page


def test_changing_your_password_ends_your_other_sessions_only(app, client, auth, alice):
    laptop = app.test_client()
    login(app, laptop, alice, remember=True)
    laptop_remember = cookie(laptop, REMEMBER)
    login(app, client, alice, remember=True)
    response = change_password(client, "correct-horse", "new-horse-staple")
    assert response.status_code == 302
    assert "other sessions are logged out" in client.get("/").get_data(as_text=True)
    # this browser stays logged in, remembered with a new cookie that works
    assert logged_in(client)
    assert logged_in(browser(app, remember_token=cookie(client, REMEMBER)))
    # every other one is out
    assert not logged_in(laptop)
    assert not logged_in(browser(app, remember_token=laptop_remember))
    # the old password is refused, the new one works
    auth.logout()
    assert auth.login(alice, "correct-horse").status_code == 401
    assert auth.login(alice, "new-horse-staple").status_code == 302
    rows = [r for r in audit_rows(app) if r.action == "password"]
    assert len(rows) == 1
    row = rows[0]
    assert (row.actor, row.object_type, row.object_id) == (
        alice,
        "user",
        str(user_row(app, alice).id),
    )
    assert_no_secret_in_audit(app, "correct-horse", "new-horse-staple")


def test_a_wrong_current_password_is_refused_and_counted(app, client, auth, alice):
    login(app, client, alice)
    response = change_password(client, "not-my-password", "new-horse-staple")
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "The current password is wrong." in page and 'id="error-current_password"' in page
    assert logged_in(client)  # nothing changed
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LoginFailure)) == 1
    limit = app.config["ROOKERY_LOGIN_MAX_FAILURES"]
    for _ in range(limit - 1):
        assert change_password(client, "not-my-password", "new-horse-staple").status_code == 403
    throttled = change_password(client, "correct-horse", "new-horse-staple")
    assert throttled.status_code == 429
    assert "Too many failed logins" in throttled.get_data(as_text=True)
    assert int(throttled.headers["Retry-After"]) > 0
    auth.logout()
    # the password never changed; another address is not slowed down
    assert auth.login(alice, "correct-horse", REMOTE_ADDR="10.7.7.7").status_code == 302
    assert_no_secret_in_audit(app, "not-my-password", "new-horse-staple")


def test_a_short_or_mistyped_new_password_is_a_clear_error(app, client, auth, alice):
    login(app, client, alice)
    short = change_password(client, "correct-horse", "short")
    assert short.status_code == 422
    assert "A password needs at least 8 characters." in short.get_data(as_text=True)
    assert 'id="error-new_password"' in short.get_data(as_text=True)
    differ = change_password(client, "correct-horse", "new-horse-staple", "new-horse-stapel")
    assert differ.status_code == 422
    assert 'id="error-confirm_password"' in differ.get_data(as_text=True)
    too_long = change_password(client, "correct-horse", "x" * 1025)
    assert too_long.status_code == 422
    assert "at most 1024 characters" in too_long.get_data(as_text=True)
    assert logged_in(client)
    auth.logout()
    assert auth.login(alice, "correct-horse").status_code == 302
    assert not [r for r in audit_rows(app) if r.action == "password"]


# ---------------------------------------------------------------------------- API


@pytest.fixture
def api(app, client) -> Api:
    return Api(client=client, tokens=make_tokens(app))


def test_api_change_your_own_password(app, api: Api) -> None:
    laptop = app.test_client()
    login(app, laptop, "operator", PASSWORD, remember=True)
    kept = cookie(laptop, REMEMBER)
    path = "/api/v1/account/password"
    wrong = error(
        api.post(path, {"current_password": "nope-nope", "new_password": "x" * 12}, as_="operator"),
        403,
    )
    assert wrong["message"] == "The current password is wrong."
    assert "current_password" in wrong["fields"]
    short = error(
        api.post(path, {"current_password": PASSWORD, "new_password": "short"}, as_="operator"),
        422,
    )
    assert "at least 8 characters" in short["message"] and "new_password" in short["fields"]
    error(api.post(path, {"new_password": "long-enough-pw"}, as_="operator"), 422)
    assert logged_in(laptop)
    done = api.post(
        path, {"current_password": PASSWORD, "new_password": "api-horse-staple"}, as_="operator"
    )
    assert done.status_code == 204
    assert not logged_in(laptop)
    assert not logged_in(browser(app, remember_token=kept))
    ok(api.get("/api/v1/me", as_="operator"))  # tokens are apart: still valid
    assert AuthActions(app, app.test_client()).login("operator", PASSWORD).status_code == 401
    login(app, app.test_client(), "operator", "api-horse-staple")
    assert_no_secret_in_audit(app, PASSWORD, "api-horse-staple", "nope-nope")


def test_api_own_password_needs_a_token_not_a_session(app, api: Api) -> None:
    login(app, api.client, "viewer", PASSWORD)
    body = {"current_password": PASSWORD, "new_password": "long-enough-pw"}
    error(api.post("/api/v1/account/password", body, as_=None), 401)


def test_api_wrong_current_passwords_are_throttled(app, api: Api) -> None:
    body = {"current_password": "nope-nope", "new_password": "long-enough-pw"}
    for _ in range(app.config["ROOKERY_LOGIN_MAX_FAILURES"]):
        error(api.post("/api/v1/account/password", body, as_="viewer"), 403)
    body["current_password"] = PASSWORD
    throttled = error(api.post("/api/v1/account/password", body, as_="viewer"), 429)
    assert "Too many failed logins" in throttled["message"]


def test_api_admin_resets_a_password_by_name_or_id(app, api: Api) -> None:
    laptop = app.test_client()
    login(app, laptop, "viewer", PASSWORD, remember=True)
    kept = cookie(laptop, REMEMBER)
    viewer_id = user_row(app, "viewer").id
    response = api.post("/api/v1/users/viewer/password", {"new_password": "reset-by-name-1"})
    assert response.status_code == 204
    assert not logged_in(laptop)
    assert not logged_in(browser(app, remember_token=kept))
    login(app, laptop, "viewer", "reset-by-name-1")
    response = api.post(f"/api/v1/users/{viewer_id}/password", {"new_password": "reset-by-id-2"})
    assert response.status_code == 204
    assert not logged_in(laptop)
    login(app, laptop, "viewer", "reset-by-id-2")
    assert AuthActions(app, app.test_client()).login("viewer", PASSWORD).status_code == 401
    rows = [r for r in audit_rows(app) if r.action == "password"]
    assert [(r.actor, r.object_id) for r in rows] == [("admin", str(viewer_id))] * 2
    assert_no_secret_in_audit(app, "reset-by-name-1", "reset-by-id-2")


def test_api_reset_errors(app, api: Api) -> None:
    short = error(api.post("/api/v1/users/viewer/password", {"new_password": "short"}), 422)
    assert "at least 8 characters" in short["message"]
    error(api.post("/api/v1/users/nobody/password", {"new_password": "long-enough-pw"}), 404)
    error(api.post("/api/v1/users/99999999999/password", {"new_password": "long-enough-pw"}), 404)
    own = error(api.post("/api/v1/users/admin/password", {"new_password": "long-enough-pw"}), 409)
    assert "/api/v1/account/password" in own["message"]
    error(api.post("/api/v1/users/viewer/password", {"password": "long-enough-pw"}), 422)
    for role in ("operator", "viewer"):
        body = {"new_password": "long-enough-pw"}
        error(api.post("/api/v1/users/admin/password", body, as_=role), 403)
    assert AuthActions(app, app.test_client()).login("admin", PASSWORD).status_code == 302
    assert not [r for r in audit_rows(app) if r.action == "password"]


def test_api_password_operations_are_documented(api: Api) -> None:
    paths = ok(api.get("/api/v1/openapi.json", as_=None))["paths"]
    own = paths["/api/v1/account/password"]["post"]
    assert {"204", "403", "422", "429"} <= set(own["responses"])
    assert "/api/v1/users/{ref}/password" in paths


# --------------------------------------------------------------- the users page


def test_admin_resets_a_password_on_the_users_page(app, client, auth, alice, admin_browser):
    login(app, client, alice, remember=True)
    kept = cookie(client, REMEMBER)
    alice_id = user_row(app, alice).id
    page = admin_browser.get("/users").get_data(as_text=True)
    assert f'id="reset-user-{alice_id}"' in page
    short = post(admin_browser, f"/users/{alice_id}/password", {"password": "short"})
    assert short.status_code == 422
    assert "A password needs at least 8 characters." in short.get_data(as_text=True)
    assert logged_in(client)
    done = post(admin_browser, f"/users/{alice_id}/password", {"password": "page-reset-pw-1"})
    assert done.status_code == 302
    assert "Password of alice changed" in admin_browser.get("/users").get_data(as_text=True)
    assert not logged_in(client)
    assert not logged_in(browser(app, remember_token=kept))
    assert logged_in(admin_browser)  # the admin's own session is untouched
    assert auth.login(alice, "correct-horse").status_code == 401
    assert auth.login(alice, "page-reset-pw-1").status_code == 302
    rows = [r for r in audit_rows(app) if r.action == "password"]
    assert [(r.actor, r.object_id) for r in rows] == [("root", str(alice_id))]
    assert_no_secret_in_audit(app, "page-reset-pw-1", "short")


def test_the_users_page_does_not_reset_your_own_password(app, admin_browser):
    root_id = user_row(app, "root").id
    page = admin_browser.get("/users").get_data(as_text=True)
    assert f'id="reset-user-{root_id}"' not in page
    response = post(admin_browser, f"/users/{root_id}/password", {"password": "long-enough-pw"})
    assert response.status_code == 409
    assert logged_in(admin_browser)


@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_only_an_admin_resets_passwords_on_the_page(app, client, auth, role):
    auth.create("target", "correct-horse", "viewer")
    auth.create("someone", "correct-horse", role)
    login(app, client, "someone")
    target_id = user_row(app, "target").id
    response = post(client, f"/users/{target_id}/password", {"password": "long-enough-pw"})
    assert response.status_code == 403
    assert AuthActions(app, app.test_client()).login("target", "correct-horse").status_code == 302


# ----------------------------------------------------------------------------- CLI


def test_cli_user_password_from_stdin(app, client, auth, runner, alice):
    login(app, client, alice, remember=True)
    kept = cookie(client, REMEMBER)
    result = runner.invoke(
        cli, ["user", "password", "ALICE", "--password-stdin"], input="cli-horse-staple\n"
    )
    assert result.exit_code == 0, result.output
    assert "Password of alice changed" in result.output
    assert "cli-horse-staple" not in result.output
    assert not logged_in(client)
    assert not logged_in(browser(app, remember_token=kept))
    assert auth.login(alice, "correct-horse").status_code == 401
    assert auth.login(alice, "cli-horse-staple").status_code == 302
    rows = [r for r in audit_rows(app) if r.action == "password"]
    assert [(r.actor, r.object_id) for r in rows] == [("cli", str(user_row(app, alice).id))]
    assert_no_secret_in_audit(app, "cli-horse-staple")


def test_cli_user_password_errors_are_one_line(app, runner, auth, alice):
    short = runner.invoke(cli, ["user", "password", alice, "--password-stdin"], input="short\n")
    assert short.exit_code == 1
    assert short.output.startswith("Error: A password needs at least 8 characters.")
    assert len(short.output.strip().splitlines()) == 1
    empty = runner.invoke(cli, ["user", "password", alice, "--password-stdin"], input="")
    assert empty.exit_code == 1 and empty.output.startswith("Error: A password needs")
    unknown = runner.invoke(
        cli, ["user", "password", "nobody", "--password-stdin"], input="long-enough-pw\n"
    )
    assert unknown.exit_code == 1
    assert unknown.output.strip() == "Error: No user named 'nobody'."
    for result in (short, empty, unknown):
        assert "Traceback" not in result.output
    assert auth.login(alice, "correct-horse").status_code == 302


def test_cli_user_password_prompts_twice_without_echo(app, runner, auth, alice):
    result = runner.invoke(
        cli, ["user", "password", alice], input="prompted-horse-1\nprompted-horse-1\n"
    )
    assert result.exit_code == 0, result.output
    assert "prompted-horse-1" not in result.output
    assert re.search(r"New password:.*Repeat for confirmation:", result.output, re.S)
    assert auth.login(alice, "prompted-horse-1").status_code == 302


# -------------------------------------------------------------------- API tokens


def test_disable_stops_tokens_and_a_password_change_does_not(app, api: Api) -> None:
    """Tokens are apart from sessions: a password change or reset leaves them valid;
    disabling the user refuses them (app/services/tokens.py)."""
    reset = api.post("/api/v1/users/viewer/password", {"new_password": "reset-by-name-1"})
    assert reset.status_code == 204
    ok(api.get("/api/v1/me", as_="viewer"))
    with app.app_context():
        users.set_active("viewer", False, actor="test")
    error(api.get("/api/v1/me", as_="viewer"), 401)
    with app.app_context():
        assert tokens.list_tokens(users.get_user("viewer"))[0].revoked_at is None
