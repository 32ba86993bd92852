"""Webhooks on a real PostgreSQL and a real HTTP receiver on 127.0.0.1.

Runs go through the queue and the runner (an in-process procrastinate worker); the
deliveries they queue are POSTed to a ``http.server`` in a thread, whose answers each
test chooses. Backups run against the emulated devices (fakenos) into a real git store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select, text

from app import webhooks as delivery
from app.errors import NotFound, ValidationError
from app.extensions import db
from app.models import AuditEntry, JobLog, Webhook
from app.services import credentials, inventory, jobs, runs
from app.services import webhooks as service
from tests.conftest import make_config
from tests.integration.helpers import drain, make_job, reload, wait_for

pytest_plugins = ["tests.devices"]


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers from a script."""

    answers: list[int] = field(default_factory=list)
    received: list[Delivery] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/rookery?token=abc"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Delivery(self.path, dict(self.headers), body))
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def verify(secret: str, item: Delivery) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), item.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, item.headers["X-Rookery-Signature"])


def drain_until_final(app, run_id: int, timeout: float = 30):
    deadline = time.monotonic() + timeout
    drain(app)
    while not reload(run_id).run_status.is_final:
        assert time.monotonic() < deadline, f"run {run_id} still {reload(run_id).status}"
        time.sleep(0.3)
        drain(app)
    return reload(run_id)


def queued_deliveries() -> list[tuple]:
    return db.session.execute(
        text(
            "SELECT status, args FROM procrastinate_jobs "
            "WHERE task_name = 'rookery.deliver_webhook' ORDER BY id"
        )
    ).all()


@pytest.fixture
def engine_config(engine_config):
    """The receivers of these tests listen on 127.0.0.1: an admin allowed it."""
    return {**engine_config, "ROOKERY_WEBHOOK_ALLOW": "127.0.0.1/32"}


def webhook_logs() -> list[JobLog]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(JobLog).where(JobLog.source == "rookery.webhooks").order_by(JobLog.id)
        )
    )


# ------------------------------------------------------------------- the service


def test_create_webhook_validates_and_keeps_the_secret_encrypted(ctx):
    job = make_job()
    webhook, secret = service.create_webhook(
        job.id, "https://hooks.example.net/rookery", ["timeout", "failure"], actor="alice"
    )
    assert len(secret) >= 32
    assert webhook.events == ["failure", "timeout"]
    assert webhook.enabled
    assert secret.encode() not in bytes(webhook.secret_enc)
    assert service.reveal_secret(webhook) == secret
    assert "secret" not in json.dumps(service.public_view(webhook))
    assert [w.id for w in service.list_webhooks(job.id)] == [webhook.id]

    _, chosen = service.create_webhook(
        job.id,
        "http://hooks.example.net:8080/x",
        "config_changed",
        secret="a-chosen-secret-12",
        actor="a",
    )
    assert chosen == "a-chosen-secret-12"

    cases = [
        (dict(job_id=job.id, url="ftp://example.net/x", events=["failure"]), "url"),
        (dict(job_id=job.id, url="https://", events=["failure"]), "url"),
        (dict(job_id=job.id, url="https://u:p@example.net/", events=["failure"]), "url"),
        (dict(job_id=job.id, url="not a url", events=["failure"]), "url"),
        (dict(job_id=job.id, url="https://example.net/", events=["failure", "boom"]), "events"),
        (dict(job_id=job.id, url="https://example.net/", events=[]), "events"),
        (dict(job_id=999999, url="https://example.net/", events=["failure"]), "job_id"),
        (dict(job_id=job.id, url="https://ok/", events=["failure"], secret="short"), "secret"),
        (dict(job_id=job.id, url="http://10.0.0.5:8080/x", events=["failure"]), "url"),
    ]
    for kwargs, field_name in cases:
        with pytest.raises(ValidationError) as caught:
            service.create_webhook(actor="alice", **kwargs)
        assert field_name in caught.value.fields, kwargs
    assert len(service.list_webhooks(job.id)) == 2


def test_update_rotate_delete_are_audited_without_secrets(ctx):
    job = make_job()
    webhook, secret = service.create_webhook(
        job.id, "https://example.net/a", ["failure"], actor="alice"
    )
    service.update_webhook(webhook.id, url="https://example.net/b", enabled=False, actor="bob")
    with pytest.raises(ValidationError) as caught:
        service.update_webhook(webhook.id, events=["nope"], actor="bob")
    assert "events" in caught.value.fields
    db.session.expire_all()
    webhook = service.get_webhook(webhook.id)
    assert (webhook.url, webhook.enabled, webhook.events) == (
        "https://example.net/b",
        False,
        ["failure"],
    )
    new_secret = service.rotate_secret(webhook.id, actor="bob")
    assert new_secret != secret and service.reveal_secret(service.get_webhook(webhook.id))
    service.delete_webhook(webhook.id, actor="carol")
    with pytest.raises(NotFound):
        service.get_webhook(webhook.id)
    entries = db.session.scalars(
        select(AuditEntry).where(AuditEntry.object_type == "webhook").order_by(AuditEntry.id)
    ).all()
    assert [(e.action, e.actor) for e in entries] == [
        ("create", "alice"),
        ("update", "bob"),
        ("update", "bob"),
        ("delete", "carol"),
    ]
    dump = json.dumps([[e.summary, e.before, e.after] for e in entries])
    assert secret not in dump and new_secret not in dump


# ------------------------------------------------------------------- deliveries


def test_failure_is_sent_once_after_the_last_attempt(ctx, receiver):
    job = make_job(params={"mode": "raise"}, max_retries=1, retry_delay_seconds=1)
    hook, secret = service.create_webhook(job.id, receiver.url, ["failure"], actor="test")
    service.create_webhook(job.id, receiver.url, ["timeout", "config_changed"], actor="test")
    off, _ = service.create_webhook(job.id, receiver.url, ["failure"], actor="test")
    service.update_webhook(off.id, enabled=False, actor="test")
    run = runs.start_run(job, triggered_by="test")

    drain(ctx)
    assert reload(run.id).status == "SCHEDULED", "the first attempt failed and will retry"
    assert receiver.received == [] and queued_deliveries() == []

    run = drain_until_final(ctx, run.id)
    assert (run.status, run.attempt) == ("FAILED_UNEXPECTED", 2)
    drain(ctx)
    assert len(receiver.received) == 1, "one delivery: one webhook, after the last attempt"
    item = receiver.received[0]
    assert item.path == "/hooks/rookery?token=abc"
    assert verify(secret, item)
    assert not verify("another-secret", item)
    assert item.headers["X-Rookery-Event"] == "failure"
    assert item.headers["Content-Type"] == "application/json"
    payload = item.payload
    assert payload["delivery_id"] == item.headers["X-Rookery-Delivery"]
    assert payload["event"] == "failure"
    assert payload["webhook_id"] == hook.id
    assert payload["job"] == {"id": job.id, "name": job.name, "job_type": "writer"}
    assert payload["run"]["id"] == run.id
    assert payload["run"]["status"] == "FAILED_UNEXPECTED"
    assert payload["run"]["attempt"] == 2
    assert "boom after writing" in payload["run"]["error"]
    assert [status for status, _ in queued_deliveries()] == ["succeeded"]
    assert webhook_logs() == []


def test_success_sends_nothing(ctx, receiver):
    job = make_job()
    service.create_webhook(job.id, receiver.url, ["failure", "timeout"], actor="test")
    run = runs.start_run(job, triggered_by="test")
    drain(ctx)
    assert reload(run.id).status == "COMPLETED_SUCCESS"
    assert queued_deliveries() == [] and receiver.received == []


def test_timeout_is_sent(ctx, receiver):
    job = make_job(name="slow", job_type="noop", params={"seconds": 30}, timeout_seconds=1)
    _, secret = service.create_webhook(job.id, receiver.url, ["timeout"], actor="test")
    service.create_webhook(job.id, receiver.url, ["failure"], actor="test")
    run = runs.start_run(job, triggered_by="test")
    drain(ctx)
    assert reload(run.id).status == "TIMEOUT"
    drain(ctx)
    assert [d.headers["X-Rookery-Event"] for d in receiver.received] == ["timeout"]
    item = receiver.received[0]
    assert verify(secret, item)
    assert item.payload["run"]["status"] == "TIMEOUT"
    assert item.payload["run"]["message"] == "Timed out after 1s."


def test_a_receiver_error_is_retried_with_the_same_delivery(ctx, receiver):
    receiver.answers = [500, 200]
    job = make_job(params={"mode": "fail"})
    _, secret = service.create_webhook(job.id, receiver.url, ["failure"], actor="test")
    run = runs.start_run(job, triggered_by="test")
    drain(ctx)
    assert reload(run.id).status == "COMPLETED_FAILURE"
    assert len(receiver.received) == 1
    [line] = webhook_logs()
    assert line.level == "warning"
    assert "HTTP 500" in line.message and "will retry" in line.message
    assert line.run_id == run.id and line.job_id == job.id
    assert line.meta["attempt"] == 1 and line.meta["receiver"].startswith("http://127.0.0.1:")
    assert "token=abc" not in line.message + json.dumps(line.meta)

    def delivered() -> bool:
        drain(ctx)
        return len(receiver.received) >= 2

    wait_for(delivered, timeout=30, what="the retried delivery")
    first, second = receiver.received
    assert first.headers["X-Rookery-Delivery"] == second.headers["X-Rookery-Delivery"]
    assert first.body == second.body and verify(secret, second)
    assert [status for status, _ in queued_deliveries()] == ["succeeded"]
    assert len(webhook_logs()) == 1
    assert reload(run.id).status == "COMPLETED_FAILURE"


def test_an_unreachable_receiver_is_logged_and_the_run_unaffected(ctx, closed_port):
    job = make_job(params={"mode": "fail"})
    _, secret = service.create_webhook(
        job.id, f"http://127.0.0.1:{closed_port}/hook", ["failure"], actor="test"
    )
    run = runs.start_run(job, triggered_by="test")
    drain(ctx)
    run = reload(run.id)
    assert (run.status, run.message) == ("COMPLETED_FAILURE", "declined")
    [line] = webhook_logs()
    assert line.level == "warning"
    assert "not delivered" in line.message and "will retry" in line.message
    assert "cannot reach the receiver" in line.meta["admin_only"]["reason"]
    assert "cannot reach" not in line.message and "refused" not in line.message.lower()
    assert line.meta["event"] == "failure" and line.meta["max_attempts"] == delivery.ATTEMPTS
    dump = " ".join(
        str(row) for row in db.session.execute(text("SELECT message, meta FROM job_logs")).all()
    )
    assert secret not in dump
    [(status, args)] = queued_deliveries()
    assert status == "todo", "the delivery waits for its retry"
    assert args["run_id"] == run.id


def test_a_failed_defer_does_not_change_how_the_run_ends(ctx, receiver, monkeypatch):
    job = make_job(params={"mode": "fail"})
    service.create_webhook(job.id, receiver.url, ["failure"], actor="test")

    def broken(*args, **kwargs):
        raise RuntimeError("queue unavailable")

    run = runs.start_run(job, triggered_by="test")
    monkeypatch.setattr(delivery.queue, "defer_in_transaction", broken)
    drain(ctx)
    assert reload(run.id).status == "COMPLETED_FAILURE"
    assert queued_deliveries() == []


# ------------------------------------------------------------------- backups


@pytest.fixture
def lab_config(database_url, tmp_path, jobs_dir):
    return make_config(
        database_url,
        tmp_path / "instance",
        ROOKERY_JOBS_PATH=str(jobs_dir),
        ROOKERY_CONFIG_REPO=str(tmp_path / "configs"),
        ROOKERY_SSH_CONNECT_TIMEOUT=3,
        ROOKERY_SSH_READ_TIMEOUT=4,
        ROOKERY_CONNECT_RETRIES=0,
        ROOKERY_DEFAULT_RETRIES=0,
        ROOKERY_WEBHOOK_ALLOW="127.0.0.1/32",
    )


@pytest.fixture
def lab_app(lab_config, app_factory, device_lab):
    app = app_factory(lab_config)
    with app.app_context():
        for device in device_lab.devices[:2]:
            inventory.create_device(
                name=device.name,
                host="127.0.0.1",
                port=device_lab.port_of(device.name),
                platform=device.platform,
                tags=["lab", f"dev-{device.name}"],
                actor="test",
            )
            credentials.create_credential(
                f"cred-{device.name}",
                device.username,
                device.password,
                enable_secret=device.enable_secret,
                tags=[f"dev-{device.name}"],
                actor="test",
            )
        yield app


def test_backup_that_changed_configs_sends_the_diff(lab_app, device_lab, receiver):
    job = jobs.create_job(
        name="nightly", job_type="config_backup", target_tags=["lab"], actor="test"
    )
    _, secret = service.create_webhook(job.id, receiver.url, ["config_changed"], actor="test")
    names = sorted(d.name for d in device_lab.devices[:2])

    first = runs.start_run(job, triggered_by="test")
    drain(lab_app, concurrency=2)
    assert reload(first.id).status == "COMPLETED_SUCCESS"
    drain(lab_app)
    [initial] = receiver.received
    assert verify(secret, initial)
    config = initial.payload["config"]
    assert config["commit"] == reload(first.id).result["commit"]
    assert sorted(config["devices"]) == names
    assert config["diff"].count("--- /dev/null") == 2, "new devices diff against nothing"

    second = runs.start_run(job, triggered_by="test")
    drain(lab_app, concurrency=2)
    drain(lab_app)
    assert reload(second.id).result["commit"] is None
    assert len(receiver.received) == 1, "nothing changed, nothing sent"

    changed = device_lab.devices[0]
    device_lab.set_config(
        changed.name, device_lab.config_of(changed.name).replace("rev-1", "rev-2", 1)
    )
    third = runs.start_run(job, triggered_by="test")
    drain(lab_app, concurrency=2)
    drain(lab_app)
    third = reload(third.id)
    assert len(receiver.received) == 2
    item = receiver.received[1]
    assert verify(secret, item)
    assert item.headers["X-Rookery-Event"] == "config_changed"
    config = item.payload["config"]
    assert config["devices"] == [changed.name]
    assert config["commit"] == third.result["commit"]
    diff = config["diff"]
    assert f"--- {changed.name}@{reload(first.id).result['commit'][:12]}" in diff
    assert f"+++ {changed.name}@{third.result['commit'][:12]}" in diff
    assert any(line.startswith("-") and "rev-1" in line for line in diff.splitlines())
    assert any(line.startswith("+") and "rev-2" in line for line in diff.splitlines())
    assert config["diff_truncated"] is False and config["diff_error"] is None
    assert item.payload["run"]["status"] == "COMPLETED_SUCCESS"
    assert db.session.scalar(select(Webhook.id)) is not None
