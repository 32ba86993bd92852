"""Pinned SSH host keys against real SSH servers: FakeNOS lab devices and an attacker's trap.

Trust on first use pins the key a device first presents; a server presenting another key
is refused before any password is offered (``ssh_trap`` records what it is offered), with
no retry and no other credential tried; an admin accepts the new key (page or API),
audited; strict mode trusts only keys an admin approved.
"""

from __future__ import annotations

import re
import textwrap

import pytest
from sqlalchemy import select

from app import demo_lab
from app.drivers import HostKeyMismatch, HostKeyNotApproved, SessionOptions
from app.drivers.netmiko_driver import NetmikoSession
from app.extensions import db
from app.job_api import DeviceTarget, ResolvedCredential
from app.models import AuditEntry, Credential, Device, DeviceResult, JobRun
from app.services import credentials, jobs, runs
from app.ssh_keys import HostKey
from tests.conftest import csrf_token, make_config
from tests.integration.helpers import drain, load_lab_devices, reload
from tests.integration.test_api_support import Api, error, make_tokens, ok
from tests.ssh_trap import SshTrap

pytest_plugins = ["tests.devices"]

SPARE_PASSWORD = "Spare-Pa55-for-every-lab-device"


@pytest.fixture
def app(database_url, tmp_path, jobs_dir, app_factory):
    (jobs_dir / "show_version.py").write_text(
        textwrap.dedent('''
        """Connects through device.connect() like the built-in jobs."""
        JOB_META = {"job_type": "show_version", "targets": "devices"}

        def run(device, job_id, config, db):
            with device.connect() as session:
                output = session.send_command("show version")
            return {"message": f"{len(output)} bytes", "output": output}
    ''')
    )
    return app_factory(
        make_config(
            database_url,
            tmp_path / "instance",
            ROOKERY_JOBS_PATH=str(jobs_dir),
            ROOKERY_CONFIG_REPO=str(tmp_path / "configs"),
            ROOKERY_SSH_CONNECT_TIMEOUT=3,
            ROOKERY_SSH_READ_TIMEOUT=4,
            # retries on: a refused host key must not use them
            ROOKERY_CONNECT_RETRIES=2,
            ROOKERY_DEFAULT_RETRIES=0,
        )
    )


@pytest.fixture
def api(app, client) -> Api:
    return Api(client=client, tokens=make_tokens(app))


@pytest.fixture
def lab(app, api, device_lab):
    """One lab device (ios) in the inventory with its own credential, and a spare one
    of lower priority number (tried first) that every lab device shares."""
    with app.app_context():
        device = next(d for d in device_lab.devices if d.platform == "cisco_ios")
        load_lab_devices([device], device_lab)
        credentials.create_credential(
            "spare", "netops", SPARE_PASSWORD, priority=10, tags=["lab"], actor="test"
        )
        yield device


def device_row(name: str) -> Device:
    db.session.expire_all()
    device = db.session.scalar(select(Device).where(Device.name == name))
    assert device is not None
    return device


def run_job(app, name: str = "show") -> tuple[JobRun, DeviceResult]:
    job = jobs.create_job(
        name=f"{name}-{db.session.scalar(select(db.func.count(JobRun.id)))}",
        job_type="show_version",
        target_tags=["lab"],
        no_overlap=False,
        actor="test",
    )
    run = runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    run = reload(run.id)
    result = db.session.scalar(select(DeviceResult).where(DeviceResult.run_id == run.id))
    assert result is not None
    return run, result


def credential_counts() -> dict[str, tuple[int, int]]:
    db.session.expire_all()
    return {
        c.name: (c.success_count, c.failure_count) for c in db.session.scalars(select(Credential))
    }


def repoint(api: Api, device_id: int, port: int) -> None:
    ok(api.patch(f"/api/v1/devices/{device_id}", json={"port": port}, as_="admin"))


# ---------------------------------------------------------------- trust on first use


def test_first_connection_pins_the_lab_key_shown_in_api_and_page(app, api, lab, auth, client):
    lab_key = demo_lab.host_key()
    device = device_row(lab.name)
    assert ok(api.get(f"/api/v1/devices/{device.id}", as_="viewer"))["host_key"] is None

    run, result = run_job(app)
    assert run.status == "COMPLETED_SUCCESS", result.message
    body = ok(api.get(f"/api/v1/devices/{device.id}", as_="viewer"))
    assert body["host_key"]["fingerprint"] == lab_key.fingerprint
    assert body["host_key"]["type"] == "ssh-rsa"
    assert body["host_key"]["public_key"] == lab_key.openssh()
    assert body["host_key"]["source"] == "learned" and body["host_key"]["approved"] is False
    assert body["host_key"]["seen_at"]
    assert body["host_key_pending"] is None
    listed = ok(api.get("/api/v1/devices", as_="viewer"))["items"]
    assert listed[0]["host_key"]["fingerprint"] == lab_key.fingerprint

    auth.create("olga", role="operator")
    auth.login("olga")
    page = client.get(f"/devices/{device.id}").get_data(as_text=True)
    assert lab_key.fingerprint in page and "learned on first use" in page
    assert "accept-host-key" not in page and "set-host-key" not in page

    # the pinned key is checked from now on, and it matches: still fine
    again, result = run_job(app)
    assert again.status == "COMPLETED_SUCCESS", result.message
    assert device_row(lab.name).host_key == lab_key.key


def test_first_use_never_overwrites_a_key_pinned_meanwhile(app, lab):
    """Two workers meeting a new device at once: the second keeps the first one's key."""
    from app.services import host_keys

    device = device_row(lab.name)
    first, second = HostKey.from_pkey(_ecdsa()), HostKey.from_pkey(_ecdsa())
    assert host_keys.learn(device.id, first) == first
    assert host_keys.learn(device.id, second) == first
    assert device_row(lab.name).pinned_host_key == first


def _ecdsa():
    import paramiko

    return paramiko.ECDSAKey.generate()


# ------------------------------------------------------------ a changed host key


def test_a_server_with_another_key_gets_no_password(app, api, lab, ssh_trap: SshTrap):
    device = device_row(lab.name)
    run, result = run_job(app)
    assert run.status == "COMPLETED_SUCCESS", result.message
    before = credential_counts()

    repoint(api, device.id, ssh_trap.port)
    run, result = run_job(app)
    trap_key = HostKey.from_pkey(ssh_trap.host_key)
    assert result.status == "host_key_changed", result.message
    assert run.status == "COMPLETED_FAILURE"
    assert "host key changed" in result.message
    assert f"expected {demo_lab.host_key().fingerprint}, got {trap_key.fingerprint}" in (
        result.message
    )
    assert "an admin must accept the new key" in result.message
    # connected once (it is the trap that answered), offered nothing, tried nothing else
    assert ssh_trap.connections == 1
    assert ssh_trap.passwords == [] and ssh_trap.attempts == []
    assert result.connect_attempts == 1 and result.credential_name is None
    assert credential_counts() == before, "a refused host key is no credential failure"

    body = ok(api.get(f"/api/v1/devices/{device.id}", as_="viewer"))
    assert body["host_key"]["fingerprint"] == demo_lab.host_key().fingerprint
    assert body["host_key_pending"]["fingerprint"] == trap_key.fingerprint
    assert body["host_key_pending"]["type"] == "ecdsa-sha2-nistp256"

    # the run page shows the result with its own badge
    detail = ok(api.get(f"/api/v1/runs/{run.id}/results", as_="viewer"))
    assert detail["items"][0]["status"] == "host_key_changed"


def test_an_admin_accepts_the_changed_key_and_the_device_connects(app, api, lab, auth, client):
    device = device_row(lab.name)
    wrong = HostKey.from_pkey(_ecdsa())
    set_body = ok(
        api.call(
            "PUT", f"/api/v1/devices/{device.id}/host-key", json={"key": wrong.openssh() + " x"}
        )
    )
    assert set_body["host_key"]["fingerprint"] == wrong.fingerprint
    assert set_body["host_key"]["source"] == "set" and set_body["host_key"]["approved"] is True

    run, result = run_job(app)
    assert result.status == "host_key_changed", result.message
    lab_key = demo_lab.host_key()
    pending = ok(api.get(f"/api/v1/devices/{device.id}"))["host_key_pending"]
    assert pending["fingerprint"] == lab_key.fingerprint

    accept = f"/api/v1/devices/{device.id}/host-key/accept"
    error(api.post(accept, json={}, as_="operator"), 403)
    error(api.post(accept, json={}, as_="viewer"), 403)
    error(api.post(accept, json={"fingerprint": wrong.fingerprint}), 409)  # not what is pending
    assert device_row(lab.name).pinned_host_key == wrong

    # the page: an admin sees the pending key and the button; an operator does not
    auth.create("olga", role="operator")
    auth.login("olga")
    page = client.get(f"/devices/{device.id}").get_data(as_text=True)
    assert wrong.fingerprint in page and "host-key-pending-note" in page
    assert 'id="accept-host-key"' not in page and "host-key-pending-fingerprint" not in page
    form_token = csrf_token(client, f"/devices/{device.id}")
    refused = client.post(
        f"/devices/{device.id}/host-key/accept",
        data={"csrf_token": form_token, "fingerprint": lab_key.fingerprint},
    )
    assert refused.status_code == 403
    auth.logout()
    auth.create("ada", role="admin")
    auth.login("ada")
    page = client.get(f"/devices/{device.id}").get_data(as_text=True)
    assert 'id="accept-host-key"' in page and lab_key.fingerprint in page
    hidden = re.search(r'name="fingerprint" value="([^"]+)"', page)
    assert hidden and hidden.group(1) == lab_key.fingerprint
    accepted = client.post(
        f"/devices/{device.id}/host-key/accept",
        data={"csrf_token": csrf_token(client, f"/devices/{device.id}"), "fingerprint": hidden[1]},
    )
    assert accepted.status_code == 302

    body = ok(api.get(f"/api/v1/devices/{device.id}"))
    assert body["host_key"]["fingerprint"] == lab_key.fingerprint
    assert body["host_key"]["source"] == "accepted" and body["host_key_pending"] is None
    run, result = run_job(app)
    assert run.status == "COMPLETED_SUCCESS", result.message

    entries = list(
        db.session.scalars(
            select(AuditEntry)
            .where(AuditEntry.object_type == "device", AuditEntry.action.like("host_key_%"))
            .order_by(AuditEntry.id)
        )
    )
    assert [(e.action, e.actor) for e in entries] == [
        ("host_key_set", "admin"),
        ("host_key_accept", "ada"),
    ]
    assert entries[1].before["fingerprint"] == wrong.fingerprint
    assert entries[1].after["fingerprint"] == lab_key.fingerprint
    assert wrong.fingerprint in entries[1].summary and lab_key.fingerprint in entries[1].summary


def test_accept_through_the_api_and_forget(app, api, lab, device_lab, ssh_trap: SshTrap):
    device = device_row(lab.name)
    run_job(app)
    repoint(api, device.id, ssh_trap.port)
    run_job(app)
    trap_key = HostKey.from_pkey(ssh_trap.host_key)
    accept = f"/api/v1/devices/{device.id}/host-key/accept"
    body = ok(api.post(accept))  # no body: whatever is pending
    assert body["host_key"]["fingerprint"] == trap_key.fingerprint
    error(api.post(accept), 409)  # nothing pending any more

    forget = f"/api/v1/devices/{device.id}/host-key"
    error(api.delete(forget, as_="operator"), 403)
    assert api.delete(forget).status_code == 204
    assert ok(api.get(f"/api/v1/devices/{device.id}"))["host_key"] is None
    error(api.call("PUT", forget, json={"key": "ssh-ed25519 AAAA"}), 422)
    error(api.call("PUT", forget, json={"key": "ssh-ed25519 AAAA"}, as_="operator"), 403)
    actions = db.session.scalars(
        select(AuditEntry.action).where(AuditEntry.action.like("host_key_%"))
    ).all()
    assert sorted(actions) == ["host_key_accept", "host_key_forget"]

    # forgotten: the next connection learns the lab's key again
    repoint(api, device.id, device_lab.port_of(lab.name))
    run, result = run_job(app)
    assert run.status == "COMPLETED_SUCCESS", result.message
    assert device_row(lab.name).pinned_host_key == demo_lab.host_key()


# ----------------------------------------------------------------------- strict mode


def test_strict_mode_sends_nothing_without_an_approved_key(app, api, lab, ssh_trap: SshTrap):
    app.config["ROOKERY_SSH_HOST_KEYS"] = "strict"
    device = device_row(lab.name)
    repoint(api, device.id, ssh_trap.port)
    run, result = run_job(app)
    trap_key = HostKey.from_pkey(ssh_trap.host_key)
    assert result.status == "host_key_unapproved", result.message
    assert run.status == "COMPLETED_FAILURE"
    assert "no approved host key" in result.message and trap_key.fingerprint in result.message
    assert ssh_trap.connections == 1 and ssh_trap.passwords == []
    assert result.connect_attempts == 1
    body = ok(api.get(f"/api/v1/devices/{device.id}"))
    assert body["host_key"] is None
    assert body["host_key_pending"]["fingerprint"] == trap_key.fingerprint


def test_strict_mode_trusts_only_approved_keys(app, api, lab):
    device = device_row(lab.name)
    run, result = run_job(app)  # tofu: learned, not approved
    assert run.status == "COMPLETED_SUCCESS", result.message

    app.config["ROOKERY_SSH_HOST_KEYS"] = "strict"
    run, result = run_job(app)
    assert result.status == "host_key_unapproved", result.message
    lab_key = demo_lab.host_key()
    body = ok(api.get(f"/api/v1/devices/{device.id}"))
    assert body["host_key_pending"]["fingerprint"] == lab_key.fingerprint

    body = ok(api.post(f"/api/v1/devices/{device.id}/host-key/accept", json={}))
    assert body["host_key"]["approved"] is True
    run, result = run_job(app)
    assert run.status == "COMPLETED_SUCCESS", result.message

    # a key an admin set is approved too
    ok(api.call("PUT", f"/api/v1/devices/{device.id}/host-key", json={"key": lab_key.openssh()}))
    run, result = run_job(app)
    assert run.status == "COMPLETED_SUCCESS", result.message


# ---------------------------------------------------------------------- driver level


def test_the_driver_refuses_a_pinned_device_whose_server_changed(device_lab, ssh_trap: SshTrap):
    lab_device = next(d for d in device_lab.devices if d.platform == "cisco_ios")
    credential = ResolvedCredential(
        id=1, name="c", username=lab_device.username, password=lab_device.password
    )
    target = DeviceTarget(
        id=1,
        name="r1",
        host="127.0.0.1",
        port=ssh_trap.port,
        platform="cisco_ios",
        host_key=demo_lab.host_key(),
    )
    options = SessionOptions(connect_timeout=3, read_timeout=3)
    with pytest.raises(HostKeyMismatch, match="host key changed") as refused:
        NetmikoSession.open(target, credential, options)
    assert refused.value.offered == HostKey.from_pkey(ssh_trap.host_key)
    assert f"r1 (127.0.0.1:{ssh_trap.port}): host key changed" in str(refused.value)

    target.host_key = None
    strict = SessionOptions(connect_timeout=3, read_timeout=3, host_keys="strict")
    with pytest.raises(HostKeyNotApproved) as unapproved:
        NetmikoSession.open(target, credential, strict)
    assert unapproved.value.offered == HostKey.from_pkey(ssh_trap.host_key)
    assert ssh_trap.passwords == []

    # the lab device itself: its key pinned, the session opens and reports it
    target.port = device_lab.port_of(lab_device.name)
    target.host_key = demo_lab.host_key()
    with NetmikoSession.open(target, credential, options) as session:
        assert session.host_key == demo_lab.host_key() and not session.host_key_unpinned
    target.host_key = None
    with NetmikoSession.open(target, credential, options) as session:
        assert session.host_key == demo_lab.host_key() and session.host_key_unpinned


# ------------------------------------------------------------------------ the page


def test_an_admin_pins_and_forgets_a_key_on_the_page(app, auth, client):
    from app.services import inventory

    with app.app_context():
        device = inventory.create_device(
            name="r9", host="192.0.2.9", port=22, platform="cisco_ios", actor="test"
        )
        device_id = device.id
    key = HostKey.from_pkey(_ecdsa())
    auth.create("ada", role="admin")
    auth.login("ada")
    page = f"/devices/{device_id}"
    assert "no-host-key" in client.get(page).get_data(as_text=True)

    bad = client.post(
        f"{page}/host-key/set", data={"csrf_token": csrf_token(client, page), "key": "ssh-rsa x"}
    )
    assert bad.status_code == 302
    shown = client.get(page).get_data(as_text=True)
    assert "not valid base64" in shown or "too short" in shown
    assert "no-host-key" in shown

    pinned = client.post(
        f"{page}/host-key/set",
        data={"csrf_token": csrf_token(client, page), "key": f"192.0.2.9 {key.openssh()}"},
    )
    assert pinned.status_code == 302
    shown = client.get(page).get_data(as_text=True)
    assert key.fingerprint in shown and "set by an admin" in shown
    no_token = client.post(f"{page}/host-key/forget", data={})
    assert no_token.status_code == 400, "CSRF guards the form"
    assert (
        client.post(
            f"{page}/host-key/forget", data={"csrf_token": csrf_token(client, page)}
        ).status_code
        == 302
    )
    assert "no-host-key" in client.get(page).get_data(as_text=True)
    with app.app_context():
        actions = db.session.scalars(
            select(AuditEntry.action).where(
                AuditEntry.object_type == "device", AuditEntry.object_id == str(device_id)
            )
        ).all()
    assert sorted(actions) == ["create", "host_key_forget", "host_key_set"]
