"""The pool drops connections the server ended, without a ping per checkout."""

from __future__ import annotations

import time

import psycopg
from sqlalchemy import event, text

from app.database import connection_is_alive
from app.extensions import db


def _terminate(database_url: str) -> int:
    """End every other session on the database; return once they are gone."""
    with psycopg.connect(database_url, autocommit=True) as admin:
        others = (
            "FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        ended = admin.execute(f"SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) {others}")
        count = ended.fetchone()[0]
        deadline = time.monotonic() + 10
        while admin.execute(f"SELECT count(*) {others}").fetchone()[0]:
            assert time.monotonic() < deadline, "terminated sessions did not end"
            time.sleep(0.02)
        return count


def test_connection_is_alive_tells_a_terminated_connection(database_url):
    with psycopg.connect(database_url, autocommit=True) as alive:
        assert connection_is_alive(alive)
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (alive.info.backend_pid,))
        for _ in range(50):  # the server's goodbye arrives asynchronously
            if not connection_is_alive(alive):
                break
            psycopg.connect(database_url).close()
        assert not connection_is_alive(alive)


def test_a_notice_does_not_make_a_connection_dead(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("LISTEN rookery_pool_test")
        with psycopg.connect(database_url, autocommit=True) as other:
            other.execute("NOTIFY rookery_pool_test, 'hello'")
        assert connection_is_alive(conn)
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_requests_after_every_backend_was_terminated_succeed(ctx, database_url):
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    # Fill the pool with several idle connections, then end them all on the server.
    connections = [db.engine.connect() for _ in range(4)]
    for connection in connections:
        connection.execute(text("SELECT 1"))
    for connection in connections:
        connection.close()
    db.session.remove()
    assert _terminate(database_url) >= 4
    for _ in range(6):
        assert db.session.execute(text("SELECT 42")).scalar() == 42
        db.session.remove()
    # No ping: the only statements sent are the requests' own.
    assert statements.count("SELECT 1") == 4
