"""A live API for the acceptance tests: werkzeug on 127.0.0.1 in a thread, its own database.

Imported by the other ``test_api_*`` acceptance modules; holds no test of its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from psycopg import sql
from werkzeug.serving import make_server

from app import create_app
from tests.conftest import _execute, _swap_db, make_config

_served = 0


@dataclass(frozen=True)
class LiveApi:
    app: Flask
    base_url: str
    database_url: str
    instance: Path


@contextmanager
def serve_api(pg_admin: str, template_db: str, instance: Path, **config: Any) -> Iterator[LiveApi]:
    """Serve a fresh, migrated database until the block ends (then drop it)."""
    global _served
    _served += 1
    name = f"rookery_live_{os.getpid()}_{_served}"
    _execute(
        pg_admin,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_db)
        ),
    )
    database_url = _swap_db(pg_admin, name)
    config.setdefault("ROOKERY_API_MAX_WAIT_SECONDS", 1)
    app = create_app(make_config(database_url, instance, **config))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveApi(app, f"http://127.0.0.1:{server.server_port}", database_url, instance)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        from app.extensions import db

        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        _execute(
            pg_admin,
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
        )
