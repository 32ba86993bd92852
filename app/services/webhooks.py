"""Webhooks: per-job URLs told (HMAC-signed) about failures, timeouts and config changes.

The signing secret is Fernet-encrypted before it reaches the session; its clear text
exists only in the call that sets it (which hands it back once, for the receiver's
configuration) and in the worker that signs a delivery. Nothing here logs, audits or
raises a secret: the audit trail records that a secret changed, never its value.
Delivery itself lives in :mod:`app.webhooks`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from app import audit, crypto, webhook_guard
from app.errors import ValidationError
from app.extensions import db
from app.models import Job, User, Webhook
from app.services import find_row, get_row

logger = logging.getLogger(__name__)

#: what a webhook can be told about
FAILURE = "failure"
TIMEOUT = "timeout"
CONFIG_CHANGED = "config_changed"
#: a device fell out of or came back into compliance with a rule (backup or check run)
COMPLIANCE_CHANGED = "compliance_changed"
#: a change set's rollout left a device whose rollback failed (it needs a person)
ROLLBACK_FAILED = "rollback_failed"
EVENTS: tuple[str, ...] = (FAILURE, TIMEOUT, CONFIG_CHANGED, COMPLIANCE_CHANGED, ROLLBACK_FAILED)

MAX_URL = 2048
MAX_SECRET = 256
MIN_SECRET = 16


def _clean_url(value: Any, errors: dict[str, str]) -> str:
    url = "" if value is None else str(value).strip()
    if not url:
        errors["url"] = "A webhook needs a URL."
        return url
    if len(url) > MAX_URL or any(c.isspace() for c in url):
        errors["url"] = f"A webhook URL has no spaces and at most {MAX_URL} characters."
        return url
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme.lower() not in ("http", "https"):
        errors["url"] = "A webhook URL starts with http:// or https://."
    elif not parts.hostname or not port_ok:
        errors["url"] = "A webhook URL names a host (and a valid port, if any)."
    elif parts.username is not None or parts.password is not None:
        # They would show in pages and logs; the receiver checks the signature instead.
        errors["url"] = "A webhook URL may not carry a user name or password."
    else:
        # Loopback, private, link-local... targets are refused (a port scanner of the
        # workers' network otherwise). A name that does not resolve now is saved: each
        # delivery checks every address again before it connects (app/webhooks.py).
        refusal = webhook_guard.save_refusal(
            url, webhook_guard.allow_list(current_app.config.get(webhook_guard.SETTING))
        )
        if refusal is not None:
            errors["url"] = refusal
    return url


def _clean_events(value: Any, errors: dict[str, str]) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    try:
        chosen = {str(v).strip() for v in (value or []) if str(v).strip()}
    except TypeError:
        chosen = set()
        errors["events"] = f"Events are a list of: {', '.join(EVENTS)}."
        return []
    unknown = sorted(chosen - set(EVENTS))
    if unknown:
        errors["events"] = (
            f"Unknown event(s) {', '.join(map(repr, unknown))}: use {', '.join(EVENTS)}."
        )
    elif not chosen:
        errors["events"] = f"Choose at least one event: {', '.join(EVENTS)}."
    return [event for event in EVENTS if event in chosen]


def _clean_secret(value: Any, errors: dict[str, str]) -> str:
    if value is None or value == "":
        return secrets.token_urlsafe(32)
    secret = str(value)
    if not MIN_SECRET <= len(secret) <= MAX_SECRET or secret != secret.strip():
        errors["secret"] = (
            f"A webhook secret has {MIN_SECRET} to {MAX_SECRET} characters and no leading "
            "or trailing spaces (leave it empty to have one generated)."
        )
    return secret


def _job(job_id: Any) -> Job | None:
    try:
        number = int(job_id)
    except (TypeError, ValueError):
        return None
    return None if isinstance(job_id, bool) else find_row(Job, number)


def _raise_if(errors: dict[str, str]) -> None:
    if errors:
        raise ValidationError(" ".join(errors.values()), fields=errors)


def snapshot(webhook: Webhook) -> dict[str, Any]:
    """What the audit trail records of a webhook: never its secret."""
    return {
        "job_id": webhook.job_id,
        "url": webhook.url,
        "events": list(webhook.events or []),
        "enabled": webhook.enabled,
    }


def public_view(webhook: Webhook) -> dict[str, Any]:
    """A webhook fit for a page or an API answer: no secret."""
    return {
        "id": webhook.id,
        "job_id": webhook.job_id,
        "url": webhook.url,
        "events": list(webhook.events or []),
        "enabled": webhook.enabled,
        "created_at": webhook.created_at.isoformat() if webhook.created_at else None,
    }


def list_webhooks(job_id: int) -> list[Webhook]:
    """The job's webhooks, oldest first."""
    return list(
        db.session.scalars(select(Webhook).where(Webhook.job_id == job_id).order_by(Webhook.id))
    )


def get_webhook(webhook_id: int) -> Webhook:
    return get_row(Webhook, webhook_id, "webhook")


def create_webhook(
    job_id: int,
    url: str,
    events: Iterable[str] | str,
    *,
    secret: str | None = None,
    enabled: bool = True,
    actor: User | str | None,
) -> tuple[Webhook, str]:
    """Save a webhook of a job; commits. Returns it and its secret (shown once).

    Without ``secret`` one is generated. The receiver checks ``X-Rookery-Signature``
    (``sha256=`` + hex HMAC-SHA256 of the raw body) with it.
    """
    try:
        errors: dict[str, str] = {}
        job = _job(job_id)
        if job is None:
            errors["job_id"] = f"No job #{job_id}."
        clean_url = _clean_url(url, errors)
        clean_events = _clean_events(events, errors)
        clean_secret = _clean_secret(secret, errors)
        _raise_if(errors)
        assert job is not None
        webhook = Webhook(
            job_id=job.id,
            url=clean_url,
            secret_enc=crypto.encrypt(clean_secret),
            events=clean_events,
            enabled=bool(enabled),
        )
        db.session.add(webhook)
        db.session.flush()
        audit.record(
            actor=actor,
            action="create",
            object_type="webhook",
            object_id=webhook.id,
            summary=f"added webhook #{webhook.id} to job {job.name}: {', '.join(clean_events)}",
            after=snapshot(webhook),
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    logger.info("Webhook %s added to job %s", webhook.id, webhook.job_id)
    return webhook, clean_secret


def update_webhook(
    webhook_id: int,
    *,
    actor: User | str | None,
    url: str | None = None,
    events: Iterable[str] | str | None = None,
    enabled: bool | None = None,
) -> Webhook:
    """Change a webhook; None keeps a field. Commits."""
    try:
        webhook = get_webhook(webhook_id)
        before = snapshot(webhook)
        errors: dict[str, str] = {}
        if url is not None:
            webhook.url = _clean_url(url, errors)
        if events is not None:
            webhook.events = _clean_events(events, errors)
        if enabled is not None:
            webhook.enabled = bool(enabled)
        _raise_if(errors)
        after = snapshot(webhook)
        if after != before:
            audit.record(
                actor=actor,
                action="update",
                object_type="webhook",
                object_id=webhook.id,
                summary=f"changed webhook #{webhook.id} of job #{webhook.job_id}",
                before=before,
                after=after,
            )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return webhook


def rotate_secret(webhook_id: int, *, actor: User | str | None, secret: str | None = None) -> str:
    """Give a webhook a new secret (generated unless given); commits; returns it once."""
    try:
        webhook = get_webhook(webhook_id)
        errors: dict[str, str] = {}
        clean_secret = _clean_secret(secret, errors)
        _raise_if(errors)
        webhook.secret_enc = crypto.encrypt(clean_secret)
        audit.record(
            actor=actor,
            action="update",
            object_type="webhook",
            object_id=webhook.id,
            summary=f"new secret for webhook #{webhook.id} of job #{webhook.job_id}",
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return clean_secret


def delete_webhook(webhook_id: int, *, actor: User | str | None) -> None:
    """Remove a webhook; deliveries already queued for it are dropped. Commits."""
    try:
        webhook = get_webhook(webhook_id)
        audit.record(
            actor=actor,
            action="delete",
            object_type="webhook",
            object_id=webhook.id,
            summary=f"removed webhook #{webhook.id} of job #{webhook.job_id}",
            before=snapshot(webhook),
        )
        db.session.delete(webhook)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    logger.info("Webhook %s removed", webhook_id)


def reveal_secret(webhook: Webhook) -> str:
    """The clear secret, for signing a delivery (never for showing)."""
    return crypto.decrypt(webhook.secret_enc)
