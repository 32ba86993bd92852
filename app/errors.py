"""Rookery's exception hierarchy: every error a person can cause carries a clear message."""

from __future__ import annotations

#: The largest id a row can have (a PostgreSQL ``integer``): a larger one asked for is
#: "no such record", never a query the database refuses.
MAX_ID = 2_147_483_647


class RookeryError(Exception):
    """Rookery failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(RookeryError):
    """A setting is missing or invalid."""


class DatabaseUnavailable(RookeryError):
    """PostgreSQL cannot be reached."""


class EmbeddedDatabaseError(DatabaseUnavailable):
    """The embedded PostgreSQL could not be started."""


class ValidationError(RookeryError):
    """The input is invalid."""

    def __init__(self, message: str | None = None, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


class NotFound(RookeryError):
    """No such record."""


class Conflict(RookeryError):
    """The request conflicts with the current state."""


class Forbidden(RookeryError):
    """This needs a role you do not have."""

    def __init__(self, message: str | None = None, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}
