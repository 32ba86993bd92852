"""Helpers of the API tests: a user and a token per role, a client that sends them.

Imported by the other ``test_api_*`` modules (each declares its ``api`` fixture with
``make_tokens``); holds no test of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.services import tokens, users

ROLES = ("viewer", "operator", "admin")
PASSWORD = "correct-horse-battery"


@dataclass
class Api:
    """Calls the API as one of the role users (``as_=``), with their bearer token."""

    client: FlaskClient
    tokens: dict[str, str]

    def headers(self, as_: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[as_]}"} if as_ else {}

    def call(self, method: str, path: str, *, as_: str | None = "admin", **kwargs: Any):
        headers = {**self.headers(as_), **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any):
        return self.call("GET", path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any):
        if json is not None:
            kwargs["json"] = json
        return self.call("POST", path, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any):
        return self.call("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any):
        return self.call("DELETE", path, **kwargs)


def make_tokens(app: Flask) -> dict[str, str]:
    """A user per role (named after it) and a token each."""
    made: dict[str, str] = {}
    with app.app_context():
        for role in ROLES:
            user = users.create_user(role, PASSWORD, role, actor="test")
            made[role] = tokens.create_token(user, "tests", actor="test")[1]
    return made


def ok(response, status: int = 200) -> Any:
    """The JSON of a response that must have ``status``; its body in the failure message."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    return response.get_json()


def error(response, status: int) -> dict[str, Any]:
    """An error answer: that status, JSON with a message."""
    body = ok(response, status)
    assert isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["error"], str), body
    return body
