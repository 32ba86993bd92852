"""Login throttling that an attacker cannot turn against the people it protects.

Issue 13, items 4 and 5: wrong passwords for ``admin`` from one address must not lock
``admin`` out everywhere, one user's failures must not lock out the others behind
the same address (below the per-address bound), a reverse proxy's users must not
share one address, and an unknown name must cost the same work as a wrong password.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app import models
from app.extensions import db
from app.models import AuditEntry, LoginFailure
from tests.conftest import AuthActions, make_config

ATTACKER = "10.6.6.6"
ADMIN_DESK = "10.1.1.1"


def test_admin_is_not_locked_out_from_another_address(client, auth, app):
    """Item 4: guessing admin's password from one address leaves other addresses alone."""
    auth.create("admin", "correct-horse", "admin")
    for _ in range(app.config["ROOKERY_LOGIN_MAX_FAILURES"] + 2):
        auth.login("admin", "bad-password", REMOTE_ADDR=ATTACKER)
    assert auth.login("admin", "correct-horse", REMOTE_ADDR=ATTACKER).status_code == 429
    response = auth.login("admin", "correct-horse", REMOTE_ADDR=ADMIN_DESK)
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_names_are_counted_case_insensitively(client, auth, app):
    auth.create("admin", "correct-horse", "admin")
    names = ["ADMIN", "Admin", "admin"]
    for i in range(app.config["ROOKERY_LOGIN_MAX_FAILURES"]):
        assert auth.login(names[i % 3], "bad-password", REMOTE_ADDR=ATTACKER).status_code == 401
    # every spelling is the same name from the attacker's address...
    for name in names:
        assert auth.login(name, "correct-horse", REMOTE_ADDR=ATTACKER).status_code == 429
    # ...and none of them is locked anywhere else
    assert auth.login("ADMIN", "correct-horse", REMOTE_ADDR=ADMIN_DESK).status_code == 302


def test_one_users_failures_do_not_lock_others_behind_the_address(client, auth, app):
    """Below the per-address bound, other users behind a shared address log in."""
    auth.create("alice", "correct-horse")
    auth.create("bob", "battery-staple")
    app.config["ROOKERY_LOGIN_MAX_FAILURES_PER_ADDRESS"] = 8
    office = "10.2.2.2"
    for _ in range(app.config["ROOKERY_LOGIN_MAX_FAILURES"]):
        assert auth.login("alice", "bad-password", REMOTE_ADDR=office).status_code == 401
    assert auth.login("alice", "correct-horse", REMOTE_ADDR=office).status_code == 429
    assert auth.login("bob", "battery-staple", REMOTE_ADDR=office).status_code == 302
    auth.logout()
    # the per-address bound: enough failures from it, under any names, slow everyone there
    for i in range(5):
        assert auth.login(f"ghost{i}", "bad-password", REMOTE_ADDR=office).status_code == 401
    response = auth.login("bob", "battery-staple", REMOTE_ADDR=office)
    assert response.status_code == 429
    assert b"Too many failed logins for your address" in response.data
    assert auth.login("bob", "battery-staple", REMOTE_ADDR="10.3.3.3").status_code == 302


def _age_failures(app, seconds: int) -> None:
    """Move every recorded failure ``seconds`` into the past (instead of sleeping)."""
    with app.app_context():
        db.session.execute(
            update(LoginFailure).values(at=LoginFailure.at - timedelta(seconds=seconds))
        )
        db.session.commit()


def test_delays_grow_and_end(client, auth, app):
    """Growing delays, not a lock: after each wait one more try; the window forgets."""
    auth.create("alice", "correct-horse")
    limit = app.config["ROOKERY_LOGIN_MAX_FAILURES"]
    first = app.config["ROOKERY_LOGIN_DELAY_SECONDS"]
    for _ in range(limit):
        auth.login("alice", "bad-password", REMOTE_ADDR=ATTACKER)
    assert auth.login("alice", "bad-password", REMOTE_ADDR=ATTACKER).status_code == 429
    _age_failures(app, first + 1)
    # the wait is over: one more try is checked (and fails), then the wait doubles
    assert auth.login("alice", "bad-password", REMOTE_ADDR=ATTACKER).status_code == 401
    response = auth.login("alice", "correct-horse", REMOTE_ADDR=ATTACKER)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > first
    assert b"Try again in 60 seconds" in response.data or b"Try again in 59" in response.data
    _age_failures(app, 2 * first + 1)
    assert auth.login("alice", "correct-horse", REMOTE_ADDR=ATTACKER).status_code == 302
    with app.app_context():
        # a success from an address forgets that name's failures from it
        assert db.session.scalars(select(LoginFailure)).all() == []


def test_longest_wait_is_the_window(client, auth, app):
    auth.create("alice", "correct-horse")
    window = app.config["ROOKERY_LOGIN_WINDOW_SECONDS"]
    with app.app_context():
        for _ in range(30):
            db.session.add(LoginFailure(username="alice", address=ATTACKER))
        db.session.commit()
    response = auth.login("alice", "correct-horse", REMOTE_ADDR=ATTACKER)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) <= window
    assert f"Try again in {window // 60} minutes".encode() in response.data
    _age_failures(app, window + 1)
    assert auth.login("alice", "correct-horse", REMOTE_ADDR=ATTACKER).status_code == 302


def _forwarded(address: str) -> dict[str, str]:
    # what a reverse proxy on 127.0.0.1 passes on: its own address, the client's in the header
    return {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": address}


def test_forwarded_for_is_ignored_without_trusted_proxies(client, auth, app):
    """Without the setting a client cannot choose its address by writing the header."""
    assert app.config["ROOKERY_TRUSTED_PROXIES"] == 0
    auth.create("alice", "correct-horse")
    for i in range(app.config["ROOKERY_LOGIN_MAX_FAILURES"]):
        assert auth.login("alice", "bad-password", **_forwarded(f"10.5.0.{i}")).status_code == 401
    assert auth.login("alice", "correct-horse", **_forwarded("10.5.1.1")).status_code == 429
    with app.app_context():
        addresses = set(db.session.scalars(select(LoginFailure.address)))
    assert addresses == {"127.0.0.1"}


def test_trusted_proxy_gives_each_client_its_address(database_url, tmp_path, app_factory):
    """With ROOKERY_TRUSTED_PROXIES=1, users behind the proxy do not share one address."""
    proxied = app_factory(
        make_config(database_url, tmp_path / "proxied", ROOKERY_TRUSTED_PROXIES=1)
    )
    auth = AuthActions(proxied, proxied.test_client())
    auth.create("alice", "correct-horse")
    for _ in range(proxied.config["ROOKERY_LOGIN_MAX_FAILURES"]):
        assert auth.login("alice", "bad-password", **_forwarded("10.7.7.7")).status_code == 401
    assert auth.login("alice", "correct-horse", **_forwarded("10.7.7.7")).status_code == 429
    # a client's own extra entry is not trusted: only the one the proxy appended counts
    spoofed = _forwarded("10.8.8.8, 10.7.7.7")
    assert auth.login("alice", "correct-horse", **spoofed).status_code == 429
    assert auth.login("alice", "correct-horse", **_forwarded("10.8.8.8")).status_code == 302
    with proxied.app_context():
        failed = set(db.session.scalars(select(LoginFailure.address)))
        logins = db.session.scalars(
            select(AuditEntry.address).where(AuditEntry.action == "login")
        ).all()
    assert failed == {"10.7.7.7"}
    assert logins == ["10.8.8.8"]


@pytest.fixture
def hash_checks(monkeypatch) -> Iterator[list[str]]:
    """Count password-hash checks (the costly work a login does)."""
    calls: list[str] = []
    real = models.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        calls.append(pwhash)
        return real(pwhash, password)

    monkeypatch.setattr(models, "check_password_hash", counting)
    # made afresh under this suite's cheap hash method, like the users' hashes
    models._dummy_password_hash.cache_clear()
    yield calls
    models._dummy_password_hash.cache_clear()


def test_unknown_user_costs_one_hash_check_like_a_wrong_password(client, auth, app, hash_checks):
    """Item 5: an unknown name does the same work as a wrong password (one hash check)."""
    auth.create("alice", "correct-horse")
    hash_checks.clear()
    assert auth.login("alice", "wrong-password", REMOTE_ADDR="10.4.0.1").status_code == 401
    wrong_password = list(hash_checks)
    hash_checks.clear()
    assert auth.login("nobody", "wrong-password", REMOTE_ADDR="10.4.0.2").status_code == 401
    unknown_user = list(hash_checks)
    assert len(wrong_password) == len(unknown_user) == 1
    # the dummy hash is made the same way as a real one, so checking it costs the same
    real_method = wrong_password[0].split("$", 1)[0]
    assert unknown_user[0].split("$", 1)[0] == real_method
    hash_checks.clear()
    assert auth.login("alice", "correct-horse", REMOTE_ADDR="10.4.0.3").status_code == 302
    assert len(hash_checks) == 1
