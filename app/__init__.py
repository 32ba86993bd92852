"""Rookery: the application factory."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import config as settings
from app import database, headers
from app.extensions import db

__all__ = ["create_app", "migrations_dir"]

logger = logging.getLogger(__name__)


def migrations_dir() -> Path:
    """The Alembic folder (``migrations/`` beside the package, or installed next to it)."""
    import migrations

    return Path(migrations.__file__).resolve().parent


def configure_logging(level: str) -> None:
    """Console logging for Rookery's own loggers, once per process."""
    root = logging.getLogger()
    if not any(getattr(h, "_rookery", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        )
        handler._rookery = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    logging.getLogger("app").setLevel(level)
    logging.getLogger("worker").setLevel(level)
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    logging.getLogger("paramiko").setLevel(logging.WARNING)
    root.setLevel(logging.WARNING)


def create_app(
    config: Mapping[str, Any] | None = None, *, web: bool = True, create_instance: bool = True
) -> Flask:
    """Build the Flask app from the environment; ``config`` overrides (tests).

    ``web=False`` builds a worker's app: settings, database, queue and job registry,
    without the pages, the JSON API, login, CSRF and Flask-Migrate. A worker never
    serves a request nor migrates (it checks the schema with
    ``database.schema_state``, which reads the revisions without alembic), and those
    imports (the API's pydantic models and spectree, the views and their forms,
    alembic) would cost every worker process about 25 MiB for nothing.

    Without ROOKERY_INSTANCE the instance folder is found (``config.find_instance``);
    ``create_instance=False`` refuses to make a new one (a CLI command run elsewhere).
    """
    overrides = dict(config or {})
    values = settings.read_settings(os.environ, overrides)
    configure_logging(values["ROOKERY_LOG_LEVEL"])
    where = values["ROOKERY_INSTANCE"] or settings.find_instance(Path.cwd(), create=create_instance)
    instance = settings.prepare_instance(where)

    app = Flask(__name__, instance_path=str(instance), instance_relative_config=True)
    app.config.update(values)
    app.config["ROOKERY_INSTANCE"] = str(instance)
    app.config["SECRET_KEY"] = values["ROOKERY_SECRET_KEY"] or settings.read_or_create_key(
        instance / "secret_key", settings.make_secret_key
    )
    app.config["ROOKERY_ENCRYPTION_KEY"] = values[
        "ROOKERY_ENCRYPTION_KEY"
    ] or settings.read_or_create_key(instance / "encryption.key", settings.make_fernet_key)

    if "SQLALCHEMY_DATABASE_URI" not in overrides:
        sa_url, libpq_url = database.resolve(values["DATABASE_URL"], instance)
        app.config["SQLALCHEMY_DATABASE_URI"] = sa_url
        app.config["ROOKERY_PG_DSN"] = libpq_url
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", database.engine_options())
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    headers.configure_cookies(app)
    # Keyword overrides that are plain Flask settings (TESTING, WTF_CSRF_ENABLED, ...)
    app.config.update({k: v for k, v in overrides.items() if k not in settings.SETTINGS_BY_ENV})

    db.init_app(app)

    from app import profiles, registry
    from app.engine import queue

    registry.init_app(app)
    profiles.init_app(app)
    if web:
        from app import auth, errors_web, views
        from app.extensions import csrf, login_manager, migrate

        migrate.init_app(app, db, directory=str(migrations_dir()), compare_type=True)
        csrf.init_app(app)
        login_manager.init_app(app)
        auth.init_app(app)
        errors_web.init_app(app)
        headers.init_app(app)
        views.register(app)
        proxies = values["ROOKERY_TRUSTED_PROXIES"]
        if proxies:
            # Only as many hops as the operator declared: a client can write any
            # X-Forwarded-For, so trusting one entry too many lets it choose its address.
            app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    queue.bind(app)
    return app
