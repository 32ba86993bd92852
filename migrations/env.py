"""Alembic environment for Rookery (Flask-Migrate).

Procrastinate's tables, indexes, types and functions come from revision 0001 (its
vendored SQL); autogenerate must not try to drop or alter them, so
``include_object`` hides every object whose table is procrastinate's.
"""

from __future__ import annotations

import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app

config = context.config
if config.config_file_name is not None and not logging.getLogger().handlers:
    fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")

PROCRASTINATE_PREFIX = "procrastinate_"


#: indexes a migration creates only where PostgreSQL offers what they need (pg_trgm):
#: no model declares them
OPTIONAL_INDEXES = frozenset({"ix_latest_configs_body_trgm"})


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave procrastinate's objects to its own migration, and optional indexes alone."""
    if type_ == "index" and name in OPTIONAL_INDEXES:
        return False
    if type_ == "table":
        return not (name or "").startswith(PROCRASTINATE_PREFIX)
    table = getattr(obj, "table", None)
    if table is not None and table.name.startswith(PROCRASTINATE_PREFIX):
        return False
    return not (name or "").startswith(PROCRASTINATE_PREFIX)


def get_engine():
    return current_app.extensions["migrate"].db.engine


def get_metadata():
    return current_app.extensions["migrate"].db.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=get_engine().url.render_as_string(hide_password=False),
        target_metadata=get_metadata(),
        literal_binds=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", process_revision_directives)
    conf_args["include_object"] = include_object

    with get_engine().connect() as connection:
        context.configure(connection=connection, target_metadata=get_metadata(), **conf_args)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
