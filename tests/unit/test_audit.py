"""Redaction of secrets before anything reaches the audit table."""

from __future__ import annotations

from app.audit import REDACTED, redact


def test_secret_keys_are_redacted_at_any_depth():
    value = {
        "username": "netops",
        "password": "hunter2",
        "enable_secret": "s3cret",
        "params": {"api_token": "abc", "count": 3, "items": [{"private_key": "---"}]},
    }
    assert redact(value) == {
        "username": "netops",
        "password": REDACTED,
        "enable_secret": REDACTED,
        "params": {"api_token": REDACTED, "count": 3, "items": [{"private_key": REDACTED}]},
    }


def test_empty_secrets_stay_visibly_empty():
    assert redact({"password": "", "secret": None}) == {"password": "", "secret": None}


def test_original_is_not_modified():
    value = {"password": "x"}
    redact(value)
    assert value == {"password": "x"}
