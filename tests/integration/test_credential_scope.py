"""Credential scope: an operator cannot make Rookery send an admin's credentials anywhere new.

Each test plays the insider of issue 13: an operator re-points a device (API, form,
import), creates one carrying a credential's tag, adds such a tag, names a credential in
a job, or renames the tag that scopes a credential, then runs a job. An SSH server on
127.0.0.1 (``ssh_trap``) stands in for the operator's listener and records every
password it is offered: none may arrive until an admin approves the device.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import AuditEntry, Device, DeviceResult
from app.services import credentials, inventory
from tests.conftest import csrf_token
from tests.integration import test_run_commands
from tests.integration.helpers import drain, load_lab_devices
from tests.integration.test_api_support import PASSWORD, Api, error, make_tokens, ok

pytest_plugins = ["tests.devices"]

#: the app of the run_commands tests: quick timeouts, no retries
app = test_run_commands.app
ctx = test_run_commands.ctx


@pytest.fixture
def api(app, client) -> Api:
    return Api(client=client, tokens=make_tokens(app))


@pytest.fixture
def lab_device(ctx, device_lab):
    """The lab's IOS router in the inventory with its own credential (tag dev-<name>)."""
    device = next(d for d in device_lab.devices if d.platform == "cisco_ios")
    load_lab_devices([device], device_lab)
    # a second, broader credential: fallbacks must not leak either
    credentials.create_credential(
        "core-fallback", "netops", "fallback-pw-9", tags=["lab"], priority=200, actor="test"
    )
    return inventory.get_by_name(device.name), device_lab.port_of(device.name), device


def device_json(api: Api, device_id: int) -> dict:
    return ok(api.get(f"/api/v1/devices/{device_id}", as_="viewer"))


def run_job(api: Api, app, **body) -> int:
    """Save a run_commands job as the operator, run it, wait for the end; the run's id."""
    job = ok(
        api.post(
            "/api/v1/jobs",
            json={
                "name": body.pop("name", "show"),
                "job_type": "run_commands",
                "params": {"commands": ["show version"]},
                **body,
            },
            as_="operator",
        ),
        201,
    )
    run = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}, as_="operator"), 201)
    drain(app)
    return run["id"]


def result_of(run_id: int, device_name: str) -> DeviceResult:
    db.session.expire_all()
    return db.session.scalars(
        select(DeviceResult).where(
            DeviceResult.run_id == run_id, DeviceResult.device_name == device_name
        )
    ).one()


def test_operator_repointing_a_device_holds_its_credentials_until_an_admin_approves(
    api, app, lab_device, ssh_trap
):
    device, lab_port, _ = lab_device
    changed = ok(
        api.patch(
            f"/api/v1/devices/{device.id}",
            json={"host": "127.0.0.1", "port": ssh_trap.port},
            as_="operator",
        )
    )
    hold = changed["credential_hold"]
    assert hold is not None and hold["by"] == "operator"
    assert f"port changed from {lab_port} to {ssh_trap.port} by operator" in hold["reason"]

    run_id = run_job(api, app, targets={"tags": ["lab"]})
    assert ssh_trap.passwords == [] and ssh_trap.connections == 0
    result = result_of(run_id, device.name)
    assert result.status == "no_credentials"
    assert "on hold until an admin approves" in result.message
    assert "port changed" in result.message

    # Pointing it back does not lift the hold: only an admin does.
    ok(api.patch(f"/api/v1/devices/{device.id}", json={"port": lab_port}, as_="operator"))
    assert device_json(api, device.id)["credential_hold"] is not None
    for role in ("viewer", "operator"):
        error(api.post(f"/api/v1/devices/{device.id}/credential-hold/approve", as_=role), 403)
    approved = ok(api.post(f"/api/v1/devices/{device.id}/credential-hold/approve", as_="admin"))
    assert approved["credential_hold"] is None
    run_id = run_job(api, app, name="again", targets={"tags": ["lab"]})
    assert result_of(run_id, device.name).status == "success"

    actions = [
        (a.actor, a.action)
        for a in db.session.scalars(
            select(AuditEntry).where(
                AuditEntry.object_type == "device", AuditEntry.object_id == str(device.id)
            )
        )
    ]
    assert ("operator", "hold") in actions and ("admin", "approve") in actions


def test_a_new_device_or_an_added_tag_does_not_bring_a_credential_to_the_operators_host(
    api, app, lab_device, ssh_trap
):
    device, _, _ = lab_device
    scoped_tag = f"dev-{device.name}"
    created = ok(
        api.post(
            "/api/v1/devices",
            json={
                "name": "rogue",
                "host": "127.0.0.1",
                "port": ssh_trap.port,
                "platform": "cisco_ios",
                "tags": [scoped_tag],
            },
            as_="operator",
        ),
        201,
    )
    assert "created by operator" in created["credential_hold"]["reason"]
    assert f"cred-{device.name}" in created["credential_hold"]["reason"]

    plain = ok(
        api.post(
            "/api/v1/devices",
            json={
                "name": "plain",
                "host": "127.0.0.1",
                "port": ssh_trap.port,
                "platform": "cisco_ios",
            },
            as_="operator",
        ),
        201,
    )
    assert plain["credential_hold"] is None  # no credential in scope: nothing to hold
    tagged = ok(api.patch(f"/api/v1/devices/{plain['id']}", json={"tags": ["lab"]}, as_="operator"))
    assert "bring credential(s) core-fallback" in tagged["credential_hold"]["reason"]

    run_id = run_job(api, app, targets={"devices": ["rogue", "plain"]})
    assert ssh_trap.passwords == [] and ssh_trap.connections == 0
    assert result_of(run_id, "rogue").status == "no_credentials"
    assert result_of(run_id, "plain").status == "no_credentials"

    held = ok(api.get("/api/v1/devices?held=true", as_="viewer"))["items"]
    assert sorted(d["name"] for d in held) == ["plain", "rogue"]


def test_naming_a_credential_in_a_job_never_sends_it_outside_its_scope(
    api, app, lab_device, ssh_trap
):
    device, _, _ = lab_device
    # An admin's device, untagged: no credential is scoped to it.
    inventory.create_device(
        name="outsider",
        host="127.0.0.1",
        port=ssh_trap.port,
        platform="cisco_ios",
        actor="test",
    )
    run_id = run_job(
        api,
        app,
        targets={"devices": ["outsider", device.name]},
        credentials=[f"cred-{device.name}", "core-fallback"],
    )
    assert ssh_trap.passwords == [] and ssh_trap.connections == 0
    outsider = result_of(run_id, "outsider")
    assert outsider.status == "no_credentials"
    assert "none of the job's credentials" in outsider.message
    # Within its scope the named credential still works, in the job's choice.
    inside = result_of(run_id, device.name)
    assert inside.status == "success" and inside.credential_name == f"cred-{device.name}"


def test_only_admins_rename_or_delete_a_tag_that_scopes_a_credential(api, lab_device):
    device, _, _ = lab_device
    tag = inventory.get_tag_by_name(f"dev-{device.name}")
    refused = error(
        api.patch(f"/api/v1/tags/{tag.id}", json={"name": "renamed"}, as_="operator"), 403
    )
    assert f"scopes credential(s) cred-{device.name}" in refused["message"]
    error(api.delete(f"/api/v1/tags/{tag.id}?force=true", as_="operator"), 403)
    assert ok(api.get("/api/v1/credentials", as_="viewer"))["items"]  # nothing changed
    db.session.expire_all()
    assert inventory.get_tag(tag.id).name == f"dev-{device.name}"
    # a tag no credential uses stays the operators' to rename
    other = inventory.ensure_tags(["spare"])[0]
    db.session.commit()
    ok(api.patch(f"/api/v1/tags/{other.id}", json={"name": "spare2"}, as_="operator"))
    ok(api.patch(f"/api/v1/tags/{tag.id}", json={"name": "renamed"}, as_="admin"))


def test_changes_that_widen_nothing_and_admin_changes_hold_nothing(api, lab_device, ssh_trap):
    device, _, _ = lab_device
    for change in (
        {"notes": "rack 4"},
        {"enabled": False},
        {"name": "r1-renamed"},
        {"tags": ["lab"]},
    ):
        body = ok(api.patch(f"/api/v1/devices/{device.id}", json=change, as_="operator"))
        assert body["credential_hold"] is None, change
    body = ok(api.patch(f"/api/v1/devices/{device.id}", json={"port": ssh_trap.port}, as_="admin"))
    assert body["credential_hold"] is None


def test_import_by_an_operator_holds_the_devices_it_repoints(api, lab_device, ssh_trap):
    device, _, _ = lab_device
    csv = f"name,host,port,platform,tags\n{device.name},127.0.0.1,{ssh_trap.port},cisco_ios,lab\n"
    report = ok(api.post("/api/v1/imports", json={"format": "csv", "csv": csv}, as_="operator"))
    assert report["updated"] == 1
    assert "port changed" in device_json(api, device.id)["credential_hold"]["reason"]
    report = ok(
        api.post(
            "/api/v1/imports",
            json={"format": "csv", "csv": csv.replace(device.name, "imported-new")},
            as_="operator",
        )
    )
    assert report["created"] == 1
    created = db.session.scalars(select(Device).where(Device.name == "imported-new")).one()
    assert "created by operator" in created.credential_hold


def test_device_form_says_why_and_an_admin_approves_on_the_page(
    app, client, auth, lab_device, ssh_trap
):
    device, _, _ = lab_device
    auth.create("olga", PASSWORD, "operator")
    auth.create("ada", PASSWORD, "admin")
    auth.login("olga", PASSWORD)
    form = {
        "csrf_token": csrf_token(client, f"/devices/{device.id}/edit"),
        "name": device.name,
        "host": "127.0.0.1",
        "port": str(ssh_trap.port),
        "platform": "cisco_ios",
        "driver": "netmiko",
        "tags": f"lab, dev-{device.name}",
        "enabled": "1",
        "notes": "",
    }
    page = client.post(f"/devices/{device.id}/edit", data=form, follow_redirects=True)
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "No credential will be sent to" in text and 'id="credential-hold"' in text
    assert 'id="approve-credentials"' not in text  # operators cannot approve
    refused = client.post(
        f"/devices/{device.id}/approve-credentials",
        data={"csrf_token": csrf_token(client, f"/devices/{device.id}")},
    )
    assert refused.status_code == 403
    listing = client.get("/devices?held=1").get_data(as_text=True)
    assert "credentials on hold" in listing

    auth.logout()
    auth.login("ada", PASSWORD)
    page = client.get(f"/devices/{device.id}").get_data(as_text=True)
    assert 'id="approve-credentials"' in page
    done = client.post(
        f"/devices/{device.id}/approve-credentials",
        data={"csrf_token": csrf_token(client, f"/devices/{device.id}")},
        follow_redirects=True,
    )
    assert "Approved" in done.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Device, device.id).credential_hold is None
