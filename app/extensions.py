"""Flask extensions, created once here and bound in the application factory.

``db`` is created on import. The web side's extensions (``login_manager``, ``csrf``)
and Flask-Migrate (``migrate``) are created on first use of the name (PEP 562): a
worker never touches them, and their imports (Flask-WTF and WTForms; alembic, Mako
and Pygments through Flask-Migrate) would cost every worker process memory for nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    from flask_login import LoginManager
    from flask_migrate import Migrate
    from flask_wtf import CSRFProtect

    login_manager: LoginManager
    csrf: CSRFProtect
    migrate: Migrate

# Stable constraint names, so Alembic revisions can name what they alter or drop.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)


def _login_manager() -> Any:
    from flask_login import LoginManager

    return LoginManager()


def _csrf() -> Any:
    from flask_wtf import CSRFProtect

    return CSRFProtect()


def _migrate() -> Any:
    from flask_migrate import Migrate

    return Migrate()


_LAZY = {"login_manager": _login_manager, "csrf": _csrf, "migrate": _migrate}


def __getattr__(name: str) -> Any:
    """Create a lazy extension the first time its name is asked for (then a plain global)."""
    make = _LAZY.get(name)
    if make is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return globals().setdefault(name, make())  # two racing threads keep the same one
