"""Per-job webhooks: URLs told (HMAC-signed) about failures, timeouts and config changes.

A webhook's secret is shown once, in the answer that generated it; never afterwards.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import request

from app.api import paging
from app.api import schemas as s
from app.api.base import ID, actor, bp, requires, responses, spec
from app.models import Role, Webhook
from app.services import jobs as job_service
from app.services import webhooks as webhook_service

logger = logging.getLogger(__name__)


def _view(webhook: Webhook) -> dict[str, Any]:
    return webhook_service.public_view(webhook)


@bp.get(f"/jobs/<{ID}:job_id>/webhooks")
@spec.validate(query=s.Page, resp=responses(HTTP_200=s.WebhookList), tags=["webhooks"])
@requires(Role.VIEWER)
def list_webhooks(job_id: int):
    """The job's webhooks, oldest first (never their secrets)."""
    q: s.Page = request.context.query
    job_service.get_job(job_id)
    rows, next_cursor = paging.page_items(
        webhook_service.list_webhooks(job_id),
        lambda w: (w.id,),
        [int],
        cursor=q.cursor,
        limit=q.limit,
    )
    return paging.envelope([_view(w) for w in rows], next_cursor)


@bp.post(f"/jobs/<{ID}:job_id>/webhooks")
@spec.validate(json=s.WebhookCreate, resp=responses(HTTP_201=s.WebhookCreated), tags=["webhooks"])
@requires(Role.OPERATOR)
def create_webhook(job_id: int):
    """Add a webhook; a generated secret is in this answer, once."""
    body: s.WebhookCreate = request.context.json
    job_service.get_job(job_id)
    webhook, secret = webhook_service.create_webhook(
        job_id, body.url, body.events, secret=body.secret, enabled=body.enabled, actor=actor()
    )
    return {**_view(webhook), "secret": secret if body.secret is None else None}, 201


@bp.get(f"/webhooks/<{ID}:webhook_id>")
@spec.validate(resp=responses(HTTP_200=s.WebhookOut), tags=["webhooks"])
@requires(Role.VIEWER)
def get_webhook(webhook_id: int):
    """One webhook (never its secret)."""
    return _view(webhook_service.get_webhook(webhook_id))


@bp.post(f"/webhooks/<{ID}:webhook_id>/secret")
@spec.validate(json=s.SecretRotate, resp=responses(HTTP_200=s.SecretOut), tags=["webhooks"])
@requires(Role.OPERATOR)
def rotate_secret(webhook_id: int):
    """Give a webhook a new secret: the one given, or a generated one shown in this answer."""
    body: s.SecretRotate = request.context.json
    secret = webhook_service.rotate_secret(webhook_id, actor=actor(), secret=body.secret)
    return {"secret": None if body.secret else secret}


@bp.patch(f"/webhooks/<{ID}:webhook_id>")
@spec.validate(json=s.WebhookPatch, resp=responses(HTTP_200=s.WebhookOut), tags=["webhooks"])
@requires(Role.OPERATOR)
def update_webhook(webhook_id: int):
    """Change a webhook's URL, events or enabled."""
    body: s.WebhookPatch = request.context.json
    webhook = webhook_service.update_webhook(
        webhook_id, actor=actor(), url=body.url, events=body.events, enabled=body.enabled
    )
    return _view(webhook)


@bp.delete(f"/webhooks/<{ID}:webhook_id>")
@spec.validate(resp=responses(HTTP_204=None), tags=["webhooks"])
@requires(Role.OPERATOR)
def delete_webhook(webhook_id: int):
    """Remove a webhook."""
    webhook_service.delete_webhook(webhook_id, actor=actor())
    return "", 204
