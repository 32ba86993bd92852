"""Secrets at rest: Fernet with the instance key; clear text only where it is used.

Secret job parameters are stored as ``{"$secret": "<fernet token>"}``; ``seal_params``
and ``reveal_params`` convert whole parameter dicts, ``redact_params`` hides them for
events, logs, pages and the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from app.errors import ConfigError, RookeryError

SECRET_MARK = "$secret"
REDACTED = "***"


class SecretUnreadable(RookeryError):
    """A stored secret cannot be decrypted: ROOKERY_ENCRYPTION_KEY or encryption.key changed."""


def _fernet() -> Fernet:
    key = current_app.config["ROOKERY_ENCRYPTION_KEY"]
    try:
        return Fernet(key.encode() if isinstance(key, str) else key)
    except (ValueError, TypeError):
        raise ConfigError(
            "ROOKERY_ENCRYPTION_KEY (or instance/encryption.key) is not a valid Fernet key: "
            "32 url-safe base64-encoded bytes."
        ) from None


def encrypt(value: str) -> bytes:
    return _fernet().encrypt(value.encode())


def decrypt(token: bytes | str) -> str:
    raw = token.encode() if isinstance(token, str) else bytes(token)
    try:
        return _fernet().decrypt(raw).decode()
    except InvalidToken:
        raise SecretUnreadable() from None


def seal_params(params: Mapping[str, Any], secret_names: Iterable[str]) -> dict[str, Any]:
    """Encrypt the secret parameters of an already validated parameter dict."""
    secrets = set(secret_names)
    sealed: dict[str, Any] = {}
    for name, value in params.items():
        if name in secrets and isinstance(value, str) and value != "":
            sealed[name] = {SECRET_MARK: encrypt(value).decode()}
        else:
            sealed[name] = value
    return sealed


def reveal_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Decrypt sealed parameters for the job module that needs them."""
    return {
        name: decrypt(value[SECRET_MARK]) if _is_sealed(value) else value
        for name, value in params.items()
    }


def redact_params(params: Mapping[str, Any], secret_names: Iterable[str] = ()) -> dict[str, Any]:
    """Parameters fit to show: sealed or declared-secret values become ``***``."""
    secrets = set(secret_names)
    return {
        name: REDACTED if (_is_sealed(value) or (name in secrets and value)) else value
        for name, value in params.items()
    }


def _is_sealed(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {SECRET_MARK}
