"""Webhooks may not reach internal services: refused on save, checked again on delivery,
and why a delivery failed is told to admins only.

Every connection these tests let through goes to 127.0.0.1, and only when the app's
``ROOKERY_WEBHOOK_ALLOW`` allows it; the apps without it are the default an
installation gets. "Receives nothing" is proved by a listening socket whose accept
queue is counted afterwards, and ``_connect`` refuses any address outside 127.0.0.0/8
so a bug could not send traffic elsewhere.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from app import webhook_guard
from app import webhooks as delivery
from app.errors import ValidationError
from app.extensions import db
from app.models import JobLog, Webhook
from app.services import runs
from app.services import webhooks as service
from tests.conftest import AuthActions
from tests.integration.helpers import drain, make_job, reload
from tests.integration.test_api_support import Api, error, make_tokens, ok

pytest_plugins = ["tests.devices"]

LOCAL = "127.0.0.1/32"


class Listener:
    """A TCP socket listening on ``host`` that never accepts: connections wait in its
    queue, and :meth:`connections` counts them."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host = host
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        self.sock.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    item = Listener()
    yield item
    item.close()


class Receiver:
    """An HTTP server on 127.0.0.1: counts POSTs, answers ``status`` (+ ``location``)."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        self.received = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received += 1
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Deliveries connect to 127.0.0.0/8 or nowhere; every connection is recorded."""
    made: list[tuple[str, int]] = []
    real = delivery._connect

    def guarded(address: str, port: int, timeout: float):
        assert ipaddress.ip_address(address) in ipaddress.ip_network("127.0.0.0/8"), address
        made.append((address, port))
        return real(address, port, timeout)

    monkeypatch.setattr(delivery, "_connect", guarded)
    return made


@pytest.fixture
def allowed_app(engine_config, app_factory):
    """The app as an admin who allowed receivers on 127.0.0.1 runs it."""
    return app_factory({**engine_config, "ROOKERY_WEBHOOK_ALLOW": LOCAL})


def webhook_lines() -> list[JobLog]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(JobLog).where(JobLog.source == "rookery.webhooks").order_by(JobLog.id)
        )
    )


def fail_a_run(app, hook_url: str) -> int:
    """A job with a failure webhook at ``hook_url`` (saved with the app's settings), one
    failed run, its delivery attempted once. Returns the run's id."""
    with app.app_context():
        job = make_job(params={"mode": "fail"})
        service.create_webhook(job.id, hook_url, ["failure"], actor="test")
        run = runs.start_run(job, triggered_by="test")
        drain(app)
        assert reload(run.id).status == "COMPLETED_FAILURE"
        return run.id


# ------------------------------------------------------------------ on save


FORBIDDEN_URLS = [
    "http://127.0.0.1:5432/",
    "http://localhost:5000/api/v1/jobs",
    "http://[::1]:8080/",
    "http://[::ffff:127.0.0.1]:5432/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5:8080/x",
    "https://192.168.1.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0:5000/",
    "http://127.1:5432/",
    "http://2130706433:5432/",
    "http://[fe80::1]/",
]


@pytest.fixture
def api(app, client) -> Api:
    return Api(client=client, tokens=make_tokens(app))


@pytest.fixture
def job_id(api: Api) -> int:
    return ok(api.post("/api/v1/jobs", json={"name": "j", "job_type": "writer"}), 201)["id"]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_the_api_refuses_internal_targets_by_default(api: Api, job_id: int, url: str) -> None:
    body = {"url": url, "events": ["failure"]}
    found = error(api.post(f"/api/v1/jobs/{job_id}/webhooks", json=body, as_="operator"), 422)
    assert "url" in found["fields"], found
    assert "may not be loopback, private, link-local" in found["fields"]["url"]
    assert "ROOKERY_WEBHOOK_ALLOW" in found["fields"]["url"]
    assert ok(api.get(f"/api/v1/jobs/{job_id}/webhooks"))["items"] == []


def test_a_patch_to_an_internal_target_is_refused(api: Api, job_id: int) -> None:
    body = {"url": "https://hooks.example.net/rookery", "events": ["failure"]}
    created = ok(api.post(f"/api/v1/jobs/{job_id}/webhooks", json=body, as_="operator"), 201)
    found = error(
        api.patch(
            f"/api/v1/webhooks/{created['id']}",
            json={"url": "http://127.0.0.1:5432/"},
            as_="operator",
        ),
        422,
    )
    assert "127.0.0.1 is a loopback address" in found["fields"]["url"]
    assert ok(api.get(f"/api/v1/webhooks/{created['id']}"))["url"] == body["url"]


def test_names_are_judged_by_every_address_they_resolve_to(
    api: Api, job_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {
        "public.example.net": ["93.184.215.14"],
        "mixed.example.net": ["93.184.215.14", "10.1.2.3"],
        "rebind.example.net": ["127.0.0.1"],
    }

    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    monkeypatch.setattr(webhook_guard, "RESOLVER", resolve)
    post = lambda url: api.post(  # noqa: E731
        f"/api/v1/jobs/{job_id}/webhooks", json={"url": url, "events": ["failure"]}
    )
    ok(post("https://public.example.net/hook"), 201)
    ok(post("https://not-yet.example.net/hook"), 201)  # checked at delivery
    for name, kind in (("mixed", "private"), ("rebind", "loopback")):
        found = error(post(f"https://{name}.example.net/hook"), 422)
        message = found["fields"]["url"]
        assert f"{name}.example.net resolves to a {kind} address" in message
        assert not any(address in message for address in answers[f"{name}.example.net"])


def test_the_service_refuses_them_too_and_the_allow_list_admits_them(ctx, app_factory) -> None:
    job = make_job()
    with pytest.raises(ValidationError) as caught:
        service.create_webhook(job.id, "http://127.0.0.1:5432/", ["failure"], actor="test")
    assert "ROOKERY_WEBHOOK_ALLOW" in caught.value.fields["url"]
    ctx.config["ROOKERY_WEBHOOK_ALLOW"] = LOCAL
    hook, _ = service.create_webhook(job.id, "http://127.0.0.1:5432/", ["failure"], actor="test")
    with pytest.raises(ValidationError):
        service.update_webhook(hook.id, url="http://127.0.0.2:5432/", actor="test")
    with pytest.raises(ValidationError):
        service.update_webhook(hook.id, url="http://10.0.0.1/", actor="test")


def test_the_api_accepts_allowed_internal_receivers(allowed_app) -> None:
    api = Api(client=allowed_app.test_client(), tokens=make_tokens(allowed_app))
    job = ok(api.post("/api/v1/jobs", json={"name": "j", "job_type": "writer"}), 201)
    body = {"url": "http://127.0.0.1:5432/", "events": ["failure"]}
    ok(api.post(f"/api/v1/jobs/{job['id']}/webhooks", json=body, as_="operator"), 201)
    body["url"] = "http://127.0.0.2:5432/"
    error(api.post(f"/api/v1/jobs/{job['id']}/webhooks", json=body, as_="operator"), 422)


# ------------------------------------------------------------------ on delivery


def test_an_allowed_receiver_on_127_0_0_1_gets_the_delivery(allowed_app, loopback_only) -> None:
    receiver = Receiver()
    try:
        fail_a_run(allowed_app, f"http://127.0.0.1:{receiver.port}/hook")
    finally:
        receiver.close()
    assert receiver.received == 1
    assert loopback_only == [("127.0.0.1", receiver.port)]
    with allowed_app.app_context():
        assert webhook_lines() == []


def test_a_target_the_allow_list_no_longer_admits_is_not_connected_to(
    allowed_app, listener: Listener, loopback_only
) -> None:
    with allowed_app.app_context():
        job = make_job(params={"mode": "fail"})
        service.create_webhook(
            job.id, f"http://127.0.0.1:{listener.port}/hook", ["failure"], actor="test"
        )
        allowed_app.config["ROOKERY_WEBHOOK_ALLOW"] = ""  # the admin took it back
        run = runs.start_run(job, triggered_by="test")
        drain(allowed_app)
        assert reload(run.id).status == "COMPLETED_FAILURE"
        assert listener.connections() == 0 and loopback_only == []
        [line] = webhook_lines()
        reason = line.meta["admin_only"]["reason"]
        assert "address not allowed" in reason and "loopback" in reason
        assert "not delivered" in line.message and "allowed" not in line.message


def test_a_name_that_now_resolves_to_loopback_is_not_connected_to(
    app, listener: Listener, loopback_only, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: public when saved, loopback when delivered. The system resolver
    itself answers (socket.getaddrinfo is replaced for this one name), as a DNS server
    that changed its answer would."""
    answers = {"hooks.example.net": ["93.184.215.14"]}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host not in answers:
            return real(host, port, family, type, proto, flags)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))
            for address in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(webhook_guard, "RESOLVER", webhook_guard.system_resolve)
    with app.app_context():
        job = make_job(params={"mode": "fail"})
        service.create_webhook(
            job.id, f"http://hooks.example.net:{listener.port}/hook", ["failure"], actor="test"
        )
        answers["hooks.example.net"] = ["127.0.0.1"]
        run = runs.start_run(job, triggered_by="test")
        drain(app)
        assert reload(run.id).status == "COMPLETED_FAILURE"
        assert listener.connections() == 0 and loopback_only == []
        [line] = webhook_lines()
        assert "resolves to 127.0.0.1, a loopback address" in line.meta["admin_only"]["reason"]
        assert "127.0.0.1" not in line.message + json.dumps(
            {k: v for k, v in line.meta.items() if k != "admin_only"}
        )


def test_a_redirect_to_a_forbidden_port_is_not_followed(allowed_app, loopback_only) -> None:
    elsewhere = Listener("127.0.0.2")  # loopback, outside the allowed 127.0.0.1/32
    receiver = Receiver(status=302, location=f"http://127.0.0.2:{elsewhere.port}/")
    try:
        run_id = fail_a_run(allowed_app, f"http://127.0.0.1:{receiver.port}/hook")
        assert receiver.received == 1
        assert elsewhere.connections() == 0
        assert loopback_only == [("127.0.0.1", receiver.port)], "one connection: the receiver"
        with allowed_app.app_context():
            [line] = webhook_lines()
            assert line.run_id == run_id
            assert "HTTP 302" in line.message and line.meta["http_status"] == 302
    finally:
        receiver.close()
        elsewhere.close()


# ------------------------------------------------------------------ who reads why


def test_only_admins_read_why_a_delivery_failed(allowed_app, closed_port: int) -> None:
    run_id = fail_a_run(allowed_app, f"http://127.0.0.1:{closed_port}/hook")
    client = allowed_app.test_client()
    api = Api(client=client, tokens=make_tokens(allowed_app))
    query = f"/api/v1/logs?run_id={run_id}&source=rookery.webhooks"

    for role in ("viewer", "operator"):
        answer = api.get(query, as_=role)
        [line] = ok(answer)["items"]
        assert "not delivered" in line["message"]
        assert "admin_only" not in line["meta"]
        text = answer.get_data(as_text=True)
        assert "refused" not in text.lower() and "cannot reach" not in text, role
        stream = api.get(f"/api/v1/runs/{run_id}/stream", as_=role).get_data(as_text=True)
        assert "not delivered" in stream and "refused" not in stream.lower(), role

    [line] = ok(api.get(query, as_="admin"))["items"]
    assert "Connection refused" in line["meta"]["admin_only"]["reason"]
    assert "not delivered" in line["message"]

    viewer = AuthActions(allowed_app, client)
    viewer.create("vera", "correct-horse-battery", "viewer")
    assert viewer.login("vera", "correct-horse-battery").status_code in (302, 303)
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "not delivered" in page and "refused" not in page.lower()


def test_existing_rows_keep_their_webhooks(allowed_app) -> None:
    """Webhooks saved before the guard (or before the allow-list shrank) stay saved: only
    their deliveries are refused."""
    with allowed_app.app_context():
        job = make_job()
        hook, _ = service.create_webhook(job.id, "http://127.0.0.1:9/", ["failure"], actor="t")
    allowed_app.config["ROOKERY_WEBHOOK_ALLOW"] = ""
    with allowed_app.app_context():
        assert db.session.get(Webhook, hook.id) is not None
        service.update_webhook(hook.id, enabled=False, actor="t")  # no URL change: no check
