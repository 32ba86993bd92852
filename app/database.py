"""Which PostgreSQL Rookery talks to, and the checks that say whether it can.

DATABASE_URL set: that server, nothing started. Unset: the embedded PostgreSQL in
the instance folder (``app.embedded_pg``). SQLAlchemy gets ``postgresql+psycopg://``;
procrastinate and LISTEN connections get the plain libpq form of the same URL.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import pq
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError
from sqlalchemy.pool import Pool

from app import embedded_pg
from app.errors import ConfigError, DatabaseUnavailable

logger = logging.getLogger(__name__)


def resolve(database_url: str | None, instance: Path) -> tuple[str, str]:
    """Return (SQLAlchemy URL, libpq URL) for the configured or embedded server."""
    if not database_url:
        libpq = embedded_pg.server_uri(instance / "pgdata")
        return libpq.replace("postgresql://", "postgresql+psycopg://", 1), libpq
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL is not a database URL; expected "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE."
        ) from None
    if url.get_backend_name() not in {"postgresql", "postgres"}:
        raise ConfigError(
            f"DATABASE_URL names a {url.get_backend_name()!r} database; Rookery needs PostgreSQL "
            "(postgresql://...)."
        )
    sa_url = url.set(drivername="postgresql+psycopg")
    libpq = sa_url.set(drivername="postgresql").render_as_string(hide_password=False)
    return sa_url.render_as_string(hide_password=False), libpq


def safe_url(url: str) -> str:
    """A URL fit to print: the password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def check_connection(libpq_url: str, *, timeout: int = 5) -> None:
    """Connect once; raise DatabaseUnavailable with the server's reason if that fails."""
    try:
        with psycopg.connect(libpq_url, connect_timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        reason = " ".join(lines) if lines else type(exc).__name__
        raise DatabaseUnavailable(
            f"Cannot connect to PostgreSQL at {safe_url(libpq_url)}: {reason}"
        ) from None


def engine_options() -> dict[str, Any]:
    """Pool settings that ride out a PostgreSQL restart.

    No ``pool_pre_ping``: a ``SELECT 1`` on every checkout is a round trip per request,
    per run step and per device. ``drop_dead_connection`` (a checkout listener on every
    pool) notices the same dead connections without one.
    """
    return {"pool_pre_ping": False, "pool_recycle": 1800, "pool_size": 10, "max_overflow": 20}


def connection_is_alive(connection: psycopg.Connection | psycopg.AsyncConnection) -> bool:
    """False when an idle connection is known dead, without a round trip to the server.

    An idle connection has nothing to read. When the server ends it (a restart,
    ``pg_terminate_backend``, an idle timeout, a crash), its socket turns readable: the
    server's goodbye message, then end-of-file. Reading what arrived tells a dead
    connection from a harmless notice. A peer that vanished without closing its socket
    goes unnoticed here, as it would by a ping, which would hang instead.
    """
    if connection.closed or connection.broken:
        return False
    pgconn = connection.pgconn
    try:
        # The goodbye and the end-of-file may take two reads; a live connection that
        # keeps receiving notifications is let through after a few.
        for _ in range(3):
            readable, _, _ = select.select([pgconn.socket], [], [], 0)
            if not readable:
                break
            pgconn.consume_input()
    except (OSError, ValueError, psycopg.Error):
        return False
    return pgconn.status == pq.ConnStatus.OK and not pgconn.is_busy()


def drop_dead_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout listener: a dead connection is discarded, the pool tries another."""
    if isinstance(dbapi_connection, psycopg.Connection) and not connection_is_alive(
        dbapi_connection
    ):
        logger.info("Dropping a dead database connection from the pool")
        raise DisconnectionError("the server closed this connection")


sa.event.listen(Pool, "checkout", drop_dead_connection)


@contextmanager
def autocommit(engine: sa.Engine) -> Iterator[psycopg.Connection]:
    """A pooled psycopg connection in autocommit mode, for self-contained statements.

    One statement is one transaction: no BEGIN and no COMMIT (or ROLLBACK) round
    trips, and none of SQLAlchemy's per-call work. Only for statements that must not
    join a caller's transaction (the runner's status steps, a device's bookkeeping,
    log lines). The pool gets the connection back in its usual state.
    """
    pooled = engine.raw_connection()
    connection = pooled.driver_connection
    try:
        connection.autocommit = True
        yield connection
    finally:
        try:
            connection.autocommit = False
        except psycopg.Error:  # the connection broke: the pool drops it
            pooled.invalidate()
        pooled.close()


def autocommit_row(sql: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Run one statement (psycopg ``%(name)s`` style) as its own transaction; its first row.

    On the app's engine (``autocommit``), for the statements every device or log line
    runs: about 0.3 ms of CPU a call less than the Core, under the GIL a run's SSH
    threads share.
    """
    from app.extensions import db

    with autocommit(db.engine) as connection:
        return connection.execute(sql, params).fetchone()


def migration_state(engine: sa.Engine) -> dict[str, Any]:
    """Current and expected Alembic revision heads, for /health and `rookery run`."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from app import migrations_dir

    script = ScriptDirectory(str(migrations_dir()))
    heads = sorted(script.get_heads())
    with engine.connect() as conn:
        current = sorted(MigrationContext.configure(conn).get_current_heads())
    return {"current": current, "heads": heads, "up_to_date": current == heads}


def revision_heads(versions: Path) -> list[str]:
    """The head revisions of the Alembic scripts in ``versions``, without importing alembic.

    Each script names itself (``revision = "..."``) and its parent(s)
    (``down_revision = "..."``, a tuple for a merge, None for the first); a head is a
    revision no other script names as its parent. The assignments are read with
    ``ast`` (the scripts are not run), so this costs a worker nothing it has not
    imported already.
    """
    import ast

    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(versions.glob("*.py")):
        names: dict[str, Any] = {}
        for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in {"revision", "down_revision"}:
                names[target.id] = ast.literal_eval(value)
        if not isinstance(names.get("revision"), str):
            continue  # not a revision script
        revisions.add(names["revision"])
        down = names.get("down_revision")
        parents.update([down] if isinstance(down, str) else down or ())
    return sorted(revisions - parents)


def schema_state(engine: sa.Engine) -> dict[str, Any]:
    """``migration_state``'s answer without alembic (its import costs a worker ~10 MiB).

    The heads come from the migration scripts (``revision_heads``), the current
    revisions from the ``alembic_version`` table (none when it does not exist yet).
    """
    from app import migrations_dir

    heads = revision_heads(migrations_dir() / "versions")
    with engine.connect() as conn:
        exists = conn.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar()
        rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version") if exists else []
        current = sorted(row[0] for row in rows)
    return {"current": current, "heads": heads, "up_to_date": current == heads}
