"""Webhook deliveries: queued with a run's final status, POSTed by a worker after commit.

``notify_run_ended`` is called by the runner where a run gets its final status,
inside that transaction: for each enabled webhook of the run's job that wants one of
the run's events, it defers ``rookery.deliver_webhook`` on the session's connection.
So a delivery exists if and only if the final status committed, an attempt that will
be retried (not final) notifies nobody, and nothing on the network happens while the
run holds its row lock. The defer sits in a SAVEPOINT: if it fails, the run still
ends as it should and the failure is logged.

Events:

- ``failure`` — the final status is a failure (FAILED_*, COMPLETED_FAILURE), after
  the last attempt;
- ``timeout`` — the final status is TIMEOUT;
- ``config_changed`` — the run committed changed device configs to the config store
  (config_backup); the payload carries the commit, the device names and a unified diff;
- ``compliance_changed`` — the run's compliance check saw devices fall out of or come
  back into compliance with a rule; the payload's ``compliance`` lists each (device,
  rule, severity, compliant, missing and unexpected lines, commit);
- ``rollback_failed`` — a change set's rollout (its job, "Change #N: ...") left devices
  whose rollback failed: their configs differ from their snapshots; the payload's
  ``rollback_failed`` names them.

A delivery is a JSON POST with ``X-Rookery-Event``, ``X-Rookery-Delivery`` (a UUID,
the same on every retry) and ``X-Rookery-Signature: sha256=<hex HMAC-SHA256 of the
raw body with the webhook's secret>``. Anything but a 2xx answer (redirects are not
followed) is retried by procrastinate with exponential backoff: 6 attempts, waiting
3, 9, 27, 81 and 243 s between them.

Each delivery resolves the receiver's host, checks every address it resolves to
(:mod:`app.webhook_guard`: no loopback, private, link-local... address unless
``ROOKERY_WEBHOOK_ALLOW`` allows it) and connects to a checked address, never to a
second resolution; a refused address is a failed attempt with no connection made.

Each failed attempt writes a system log line on the run (webhook id, the receiver's
scheme, host and port, the HTTP status when the receiver answered one, else only
"not delivered"); the reason itself (connection refused, timed out, address not
allowed) is in the line's admin-only meta and in the worker's log, since telling
everyone which ports answer would make webhooks a port scanner. Never the secret,
nor the URL's path or query, which may hold a token.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import http.client
import json
import logging
import socket
import ssl
import uuid
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from procrastinate import JobContext
from procrastinate.retry import RetryStrategy
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import config_store, crypto, logs, webhook_guard
from app.engine import queue
from app.errors import RookeryError
from app.extensions import db
from app.models import JobRun, RunStatus, Webhook
from app.services.webhooks import (
    COMPLIANCE_CHANGED,
    CONFIG_CHANGED,
    FAILURE,
    ROLLBACK_FAILED,
    TIMEOUT,
)

logger = logging.getLogger(__name__)

DELIVER_TASK = "rookery.deliver_webhook"

#: attempts of one delivery, first included (procrastinate counts the retries)
ATTEMPTS = 6
#: the n-th retry waits BACKOFF_BASE ** n seconds
BACKOFF_BASE = 3
#: seconds to connect to the receiver and for it to answer
TIMEOUT_SECONDS = 10
#: the diff a config_changed payload carries is cut beyond this many characters
MAX_DIFF_CHARS = 512_000
USER_AGENT = "Rookery-Webhook/1"


class DeliveryFailed(RookeryError):
    """The receiver did not accept the delivery.

    Its text (the network error, the refused address) is for admins: it tells which
    ports answer and how. :attr:`public` is what anyone reading the run's log sees.
    """

    def __init__(
        self, message: str, *, http_status: int | None = None, refused: bool = False
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.refused = refused

    @property
    def public(self) -> str:
        """``HTTP <status>`` from a receiver that was allowed and answered, else nothing
        more than that the delivery failed."""
        if self.http_status is not None:
            return f"HTTP {self.http_status}"
        return "not delivered"


# ----------------------------------------------------------------- queueing


def events_for(run: JobRun) -> list[str]:
    """The webhook events a run's final status and result stand for."""
    return events_for_outcome(run.status, run.result)


def events_for_outcome(status: str, result: dict[str, Any] | None) -> list[str]:
    """The webhook events a final ``status`` with ``result`` stands for."""
    found: list[str] = []
    ended = RunStatus(status)
    if ended is RunStatus.TIMEOUT:
        found.append(TIMEOUT)
    elif ended.is_failure:
        found.append(FAILURE)
    values = result or {}
    if values.get("commit") and values.get("changed"):
        found.append(CONFIG_CHANGED)
    if compliance_changes(values):
        found.append(COMPLIANCE_CHANGED)
    if values.get("rollback_failed"):
        found.append(ROLLBACK_FAILED)
    return found


def compliance_changes(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The compliance transitions a run's result carries (a backup's finalize summary,
    or a global compliance check's ``data``)."""
    values = result or {}
    data = values.get("data") if isinstance(values.get("data"), dict) else {}
    return list(values.get("compliance_changes") or (data or {}).get("compliance_changes") or [])


def notify_run_ended(session: Session, run: JobRun) -> int:
    """Queue the deliveries a run's final status calls for, in the session's transaction.

    Returns how many were queued. Never raises: a delivery that cannot be queued must
    not change how the run ends.
    """
    if run.job_id is None or not run.run_status.is_final:
        return 0
    wanted = events_for(run)
    if not wanted:
        return 0
    queued = 0
    try:
        with session.begin_nested():
            hooks = session.scalars(
                select(Webhook)
                .where(Webhook.job_id == run.job_id, Webhook.enabled.is_(True))
                .order_by(Webhook.id)
            ).all()
            connection = session.connection().connection.driver_connection
            for hook in hooks:
                for event in wanted:
                    if event not in (hook.events or []):
                        continue
                    queue.defer_in_transaction(
                        connection,
                        DELIVER_TASK,
                        {
                            "webhook_id": hook.id,
                            "run_id": run.id,
                            "event": event,
                            "delivery_id": str(uuid.uuid4()),
                        },
                        queue=queue.HOUSEKEEPING_QUEUE,
                        priority=run.priority,
                    )
                    queued += 1
    except Exception:
        logger.exception("Could not queue the webhook deliveries of run %s", run.id)
        return 0
    if queued:
        logger.info("Run %s: %d webhook delivery(ies) queued (%s)", run.id, queued, wanted)
    return queued


# ----------------------------------------------------------------- payloads


def build_payload(run: JobRun, webhook_id: int, event: str, delivery_id: str) -> dict[str, Any]:
    """What a delivery tells (config diffs are added by :func:`config_changes`)."""

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "event": event,
        "delivery_id": delivery_id,
        "webhook_id": webhook_id,
        "job": {"id": run.job_id, "name": run.job_name, "job_type": run.job_type},
        "run": {
            "id": run.id,
            "status": run.status,
            "message": run.message,
            "error": run.error,
            "attempt": run.attempt,
            "max_attempts": run.max_attempts,
            "triggered_by": run.triggered_by,
            "signal_id": run.signal_id,
            "created_at": iso(run.created_at),
            "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at),
            "duration_ms": run.duration_ms,
            "progress": {"done": run.progress_done, "total": run.progress_total},
            "result": run.result,
        },
    }


def config_changes(commit: str, devices: list[str]) -> dict[str, Any]:
    """The commit, its changed devices and one unified diff of them (against each
    device's previous version; a new device's against nothing)."""
    store = config_store.store_for(current_app)
    parts: list[str] = []
    error = None
    try:
        try:
            store.read(devices[0], commit)
        except config_store.ConfigStoreError:
            store.sync()  # a commit another host made: fetch it (no-op without a remote)
        parts = [_device_diff(store, name, commit) for name in devices]
    except config_store.ConfigStoreError as exc:
        error = str(exc)
    diff = "".join(parts)
    truncated = len(diff) > MAX_DIFF_CHARS
    return {
        "commit": commit,
        "devices": devices,
        "diff": diff[:MAX_DIFF_CHARS] if error is None else None,
        "diff_truncated": truncated,
        "diff_error": error,
    }


def _device_diff(store: config_store.GitConfigStore, name: str, commit: str) -> str:
    versions = [v.sha for v in store.history(name, limit=100)]
    previous = None
    if commit in versions and versions.index(commit) + 1 < len(versions):
        previous = versions[versions.index(commit) + 1]
    if previous is not None:
        return store.unified_diff(name, previous, commit)
    new = (store.read(name, commit) or "").splitlines(keepends=True)
    return "".join(
        difflib.unified_diff([], new, fromfile="/dev/null", tofile=f"{name}@{commit[:12]}")
    )


def sign(secret: str, body: bytes) -> str:
    """The ``X-Rookery-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ----------------------------------------------------------------- delivery


def _connect(address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to an address :func:`webhook_guard.check_host` returned."""
    return socket.create_connection((address, port), timeout)


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to a checked address; ``Host`` still names the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = _connect(self.address, self.port, self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address; SNI and the certificate check use the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = _connect(self.address, self.port, self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def allow_list() -> webhook_guard.AllowList:
    """This app's ``ROOKERY_WEBHOOK_ALLOW`` (read at each delivery: a change applies at once)."""
    return webhook_guard.allow_list(current_app.config.get(webhook_guard.SETTING))


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow: webhook_guard.AllowList | None = None,
    resolve: webhook_guard.Resolver | None = None,
) -> int:
    """POST ``body``; the HTTP status of a 2xx answer, else DeliveryFailed with the reason.

    The URL's host is resolved and every address it resolves to checked (one forbidden
    address refuses the delivery before any connection); the connection then goes to
    a checked address, never to a second resolution. A redirect is an answer, not a
    delivery: it is not followed, and fails (and is retried) like a 5xx. No proxy from
    the environment is used (it would resolve the name itself).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    try:
        port = parts.port or webhook_guard.default_port(scheme)
    except ValueError:
        raise DeliveryFailed("the URL's port is invalid") from None
    if scheme not in ("http", "https") or not host:
        raise DeliveryFailed("the URL is not http(s)://host/...")
    try:
        addresses = webhook_guard.check_host(
            host,
            port,
            allow if allow is not None else allow_list(),
            resolve=resolve,
            timeout=TIMEOUT_SECONDS,
        )
    except webhook_guard.TargetRefused as exc:
        raise DeliveryFailed(f"address not allowed: {exc}", refused=True) from None
    except webhook_guard.Unresolved as exc:
        raise DeliveryFailed(f"cannot reach the receiver: {exc}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    pinned = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    unreachable: list[str] = []
    for address in addresses:
        connection = pinned(host, port, address, TIMEOUT_SECONDS)
        try:
            try:
                connection.connect()
            except OSError as exc:  # the next checked address, if any
                unreachable.append(f"{address}: {exc}")
                continue
            try:
                connection.request("POST", target, body=body, headers=headers)
                answer = connection.getresponse()
                answer.read(65536)
            except (OSError, http.client.HTTPException) as exc:
                raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from None
        finally:
            connection.close()
        if 200 <= answer.status < 300:
            return int(answer.status)
        raise DeliveryFailed(f"HTTP {answer.status} {answer.reason}", http_status=answer.status)
    raise DeliveryFailed(f"cannot reach the receiver: {'; '.join(unreachable)}")


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: what logs may show of it."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"
    except ValueError:
        return "<invalid URL>"


def _log(level: str, run: dict[str, Any], message: str, meta: dict[str, Any]) -> None:
    logs.write(
        level=level,
        log_type="system",
        source="rookery.webhooks",
        run_id=run["id"],
        job_id=run["job_id"],
        job_type=run["job_type"],
        message=message,
        meta=meta,
    )
    db.session.commit()


@queue.queue_app.task(
    name=DELIVER_TASK,
    queue=queue.HOUSEKEEPING_QUEUE,
    pass_context=True,
    retry=RetryStrategy(
        max_attempts=ATTEMPTS - 1, exponential_wait=BACKOFF_BASE, retry_exceptions=[DeliveryFailed]
    ),
)
def deliver_webhook(
    context: JobContext, webhook_id: int, run_id: int, event: str, delivery_id: str
) -> str:
    """POST one signed delivery; raise DeliveryFailed so procrastinate retries it."""
    attempt = context.job.attempts + 1
    webhook = db.session.get(Webhook, webhook_id)
    run = db.session.get(JobRun, run_id)
    if webhook is None or run is None or not webhook.enabled:
        db.session.rollback()
        logger.info("Delivery %s dropped: its webhook or run is gone or disabled", delivery_id)
        return "dropped"
    url = webhook.url
    where = {"id": run.id, "job_id": run.job_id, "job_type": run.job_type}
    meta = {
        "webhook_id": webhook_id,
        "event": event,
        "delivery_id": delivery_id,
        "receiver": origin(url),
        "attempt": attempt,
        "max_attempts": ATTEMPTS,
    }
    try:
        secret = crypto.decrypt(webhook.secret_enc)
    except crypto.SecretUnreadable as exc:
        db.session.rollback()
        _log("error", where, f"Webhook #{webhook_id} ({event}) not sent: {exc}", meta)
        return "failed"
    payload = build_payload(run, webhook_id, event, delivery_id)
    db.session.rollback()  # no transaction stays open across git and the network
    if event == CONFIG_CHANGED:
        result = payload["run"]["result"] or {}
        payload["config"] = config_changes(result["commit"], list(result["changed"]))
    if event == COMPLIANCE_CHANGED:
        payload["compliance"] = compliance_changes(payload["run"]["result"])
    if event == ROLLBACK_FAILED:
        payload["rollback_failed"] = list((payload["run"]["result"] or {})["rollback_failed"])
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Rookery-Event": event,
        "X-Rookery-Delivery": delivery_id,
        "X-Rookery-Signature": sign(secret, body),
    }
    try:
        status = post(url, body, headers)
    except DeliveryFailed as exc:
        final = attempt >= ATTEMPTS
        then = "giving up" if final else "will retry"
        # Everyone who reads the run's log reads this line: the network error or the
        # refused address (which ports answer, what a name resolves to) is admin-only.
        told = {"http_status": exc.http_status} if exc.http_status is not None else {}
        _log(
            "error" if final else "warning",
            where,
            f"Webhook #{webhook_id} ({event}) to {origin(url)} failed: {exc.public} "
            f"(attempt {attempt} of {ATTEMPTS}, {then})",
            {**meta, **told, logs.ADMIN_ONLY: {"reason": str(exc)}},
        )
        logger.warning(
            "Webhook %s (%s) of run %s to %s failed: %s (attempt %s of %s, %s)",
            webhook_id, event, run_id, origin(url), exc, attempt, ATTEMPTS, then,
        )  # fmt: skip
        raise
    logger.info(
        "Webhook %s (%s) of run %s delivered to %s: HTTP %s",
        webhook_id, event, run_id, origin(url), status,
    )  # fmt: skip
    return f"HTTP {status}"
