"""Inventory pages through the Flask test client: devices, tags, imports, config diffs,
credentials and job types, on a real PostgreSQL and a real git config store."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select, text

from app import config_store
from app.extensions import db
from app.models import Credential, Device, Tag
from app.services import credentials, inventory, runs
from tests.conftest import csrf_token
from tests.integration.helpers import drain, make_job

SECRET_PASSWORD = "Sup3r-S3cret-Pa55"
SECRET_ENABLE = "En4ble-S3cret-Word"


def login(auth, role: str = "operator", name: str | None = None) -> None:
    name = name or role
    auth.create(name, "correct-horse", role)
    assert auth.login(name, "correct-horse").status_code == 302


def post(client, path: str, data: dict | None = None, **kwargs):
    token = csrf_token(client, "/devices")
    return client.post(path, data={"csrf_token": token, **(data or {})}, **kwargs)


def add_device(app, name: str = "r1", host: str = "10.0.0.1", tags=("core",)) -> int:
    with app.app_context():
        device = inventory.create_device(
            name=name, host=host, platform="cisco_ios", tags=list(tags), actor="test"
        )
        return device.id


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def bulk_devices(app, n: int) -> None:
    """``n`` devices in one INSERT (dev-00001 ... ), all tagged ``bulk`` but the odd ones."""
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO devices (name, host, port, platform, driver, enabled, notes,"
                " created_at, updated_at)"
                " SELECT 'dev-' || lpad(g::text, 5, '0'), '10.' || (g / 65536) || '.'"
                " || (g / 256 % 256) || '.' || (g % 256), 22, 'cisco_ios', 'netmiko', true,"
                " '', now(), now() FROM generate_series(1, :n) g"
            ),
            {"n": n},
        )
        db.session.execute(
            text("INSERT INTO tags (name, description, created_at) VALUES ('bulk', '', now())")
        )
        db.session.execute(
            text(
                "INSERT INTO device_tags (device_id, tag_id) SELECT d.id, t.id FROM devices d,"
                " tags t WHERE t.name = 'bulk' AND d.id % 2 = 0"
            )
        )
        db.session.commit()


# ----------------------------------------------------------------------- devices


def test_device_list_renders_empty(client, auth):
    login(auth, "viewer")
    page = client.get("/devices")
    assert page.status_code == 200
    assert b'id="no-devices"' in page.data
    assert b"0 devices" in page.data
    assert b'id="new-device"' not in page.data  # a viewer is offered no create button
    restore = client.get(
        "/devices", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert b"<nav" in restore.data  # a history restore gets the whole page, not the partial


def test_device_list_pages_through_thousands(client, auth, app):
    bulk_devices(app, 3000)
    login(auth, "operator")
    page = client.get("/devices")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "3000 devices" in body and 'id="new-device"' in body
    assert "dev-00001" in body and "dev-00050" in body and "dev-00051" not in body
    next_url = re.search(r'href="([^"]+)"[^>]*id="next-page"', body).group(1).replace("&amp;", "&")
    second = client.get(next_url).get_data(as_text=True)
    assert "dev-00051" in second and "dev-00100" in second and "dev-00050" not in second
    prev_url = (
        re.search(r'href="([^"]+)"[^>]*id="prev-page"', second).group(1).replace("&amp;", "&")
    )
    back = client.get(prev_url).get_data(as_text=True)
    assert "dev-00001" in back and "dev-00050" in back and 'id="prev-page"' not in back
    # Tag filter, search, and the HTMX partial (the table only)
    tagged = client.get("/devices?tag=bulk").get_data(as_text=True)
    assert "1500 devices match" in tagged
    found = client.get("/devices?q=dev-0299", headers={"HX-Request": "true"})
    partial = found.get_data(as_text=True)
    assert partial.startswith('\n<div id="device-list"') or partial.lstrip().startswith(
        '<div id="device-list"'
    )
    assert "<nav" not in partial.split('id="device-list"')[0]
    assert "10 devices match" in partial
    last = client.get("/devices?after=dev-02990").get_data(as_text=True)
    assert "dev-03000" in last and 'id="next-page"' not in last


def test_create_edit_delete_device(client, auth, app):
    login(auth, "operator")
    created = post(
        client,
        "/devices/new",
        {
            "name": "r1",
            "host": "10.0.0.1",
            "port": "2222",
            "platform": "cisco_ios",
            "driver": "",
            "tags": "core, dc1",
            "notes": "rack 4",
            "enabled": ["0", "1"],
        },
    )
    assert created.status_code == 302
    with app.app_context():
        device = db.session.scalars(select(Device)).one()
        assert (device.port, [t.name for t in device.tags]) == (2222, ["core", "dc1"])
        device_id = device.id
    page = client.get(f"/devices/{device_id}").get_data(as_text=True)
    assert "Device r1 created." in page and "rack 4" in page and 'id="no-config"' in page
    assert 'id="no-results"' in page
    form = client.get(f"/devices/{device_id}/edit").get_data(as_text=True)
    assert 'value="10.0.0.1"' in form and 'value="core, dc1"' in form
    saved = post(
        client,
        f"/devices/{device_id}/edit",
        {
            "name": "r1",
            "host": "r1.example.net",
            "port": "22",
            "platform": "arista_eos",
            "tags": "edge",
            "enabled": "0",
        },
    )
    assert saved.status_code == 302
    with app.app_context():
        device = db.session.get(Device, device_id)
        assert (device.host, device.platform, device.enabled) == (
            "r1.example.net",
            "arista_eos",
            False,
        )
        assert [t.name for t in device.tags] == ["edge"]
    deleted = post(client, f"/devices/{device_id}/delete")
    assert deleted.status_code == 302 and deleted.headers["Location"] == "/devices"
    assert count(app, Device) == 0
    assert "Device r1 deleted" in client.get("/devices").get_data(as_text=True)


def test_device_form_errors_per_field_keep_the_input(client, auth, app):
    login(auth, "operator")
    response = post(
        client,
        "/devices/new",
        {
            "name": "bad name",
            "host": "10.0.0.256",
            "port": "notaport",
            "platform": "foo_os",
            "tags": "x" * 70,
            "notes": "keep me",
        },
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    for name in ("name", "host", "port", "platform", "tags"):
        assert f'id="error-{name}"' in body, name
    assert 'id="form-error"' in body
    assert 'value="bad name"' in body and 'value="notaport"' in body and "keep me" in body
    assert count(app, Device) == 0
    empty = post(client, "/devices/new", {})
    assert empty.status_code == 422
    assert b'id="error-name"' in empty.data and b'id="error-host"' in empty.data
    too_long = post(
        client,
        "/devices/new",
        {"name": "r" * 500, "host": "h" * 300, "platform": "cisco_ios", "notes": "n" * 20_000},
    )
    assert too_long.status_code == 422 and b'id="error-notes"' in too_long.data
    nul = post(
        client,
        "/devices/new",
        {"name": "r9", "host": "10.0.0.9", "platform": "cisco_ios", "notes": "a\x00b"},
    )
    # refused next to its field, never silently changed
    assert nul.status_code == 422 and b'id="error-notes"' in nul.data
    with app.app_context():
        assert db.session.scalar(select(Device.id).where(Device.name == "r9")) is None


def test_duplicate_name_and_double_submit(client, auth, app):
    login(auth, "operator")
    data = {"name": "r1", "host": "10.0.0.1", "platform": "cisco_ios"}
    assert post(client, "/devices/new", data).status_code == 302
    again = post(client, "/devices/new", data)
    assert again.status_code == 409
    assert b"A device named &#39;r1&#39; already exists." in again.data
    assert count(app, Device) == 1
    other = add_device(app, "r2", "10.0.0.2")
    rename = post(client, f"/devices/{other}/edit", {**data, "host": "10.0.0.2"})
    assert rename.status_code == 409 and b"already exists" in rename.data


def test_delete_refused_while_a_run_is_in_flight(client, auth, app):
    device_id = add_device(app, "r1", tags=["lab"])
    with app.app_context():
        job = make_job(name="visit", job_type="devjob", target_tags=["lab"])
        run = runs.start_run(job, triggered_by="test")
        run_id = run.id
    login(auth, "operator")
    response = post(client, f"/devices/{device_id}/delete")
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Device r1 is targeted by run #{run_id} (queued); cancel it first." in page
    assert count(app, Device) == 1
    assert post(client, f"/runs/{run_id}/cancel").status_code == 302
    assert post(client, f"/devices/{device_id}/delete").status_code == 302
    assert count(app, Device) == 0


def test_device_page_shows_recent_results(client, auth, app):
    device_id = add_device(app, "r1", tags=["lab"])
    with app.app_context():
        run_id = runs.start_run(
            make_job(name="visit", job_type="devjob", target_tags=["lab"]), triggered_by="test"
        ).id
    drain(app)
    login(auth, "viewer")
    page = client.get(f"/devices/{device_id}").get_data(as_text=True)
    assert f'href="/runs/{run_id}"' in page and "visit" in page
    assert '<span class="badge badge-success">success</span>' in page


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/devices/999999"),
        ("get", "/devices/999999/edit"),
        ("post", "/devices/999999/edit"),
        ("post", "/devices/999999/delete"),
        ("get", "/devices/999999/diff?old=abcd&new=abcd"),
        ("get", "/devices/999999/config/abcdef"),
        ("post", "/devices/tags/999999/rename"),
        ("post", "/devices/tags/999999/delete"),
        ("get", "/credentials/999999/edit"),
        ("post", "/credentials/999999/edit"),
        ("post", "/credentials/999999/delete"),
    ],
)
def test_unknown_ids_are_a_404_page(client, auth, method, path):
    login(auth, "admin")
    response = client.get(path) if method == "get" else post(client, path, {"name": "x"})
    assert response.status_code == 404
    assert b"Not Found" in response.data or b"No " in response.data
    assert b"<html" in response.data


def test_stale_csrf_token_is_a_message(client, auth, app):
    login(auth, "operator")
    response = client.post(
        "/devices/new",
        data={"csrf_token": "stale", "name": "r1", "host": "10.0.0.1", "platform": "cisco_ios"},
    )
    assert response.status_code == 400 and b"security token" in response.data
    assert count(app, Device) == 0


# ------------------------------------------------------------------ config history


def test_config_history_and_side_by_side_diff(client, auth, app):
    device_id = add_device(app, "r1")
    store = config_store.store_for(app)
    first = store.commit_run(
        run_id=1, job_name="nightly", configs={"r1": "hostname r1\ninterface Gi0/1\n shutdown\n"}
    )
    second = store.commit_run(
        run_id=2,
        job_name="nightly",
        configs={"r1": "hostname r1\ninterface Gi0/1\n no shutdown\nip domain lab\n"},
    )
    login(auth, "viewer")
    page = client.get(f"/devices/{device_id}").get_data(as_text=True)
    assert 'id="config-versions"' in page and 'id="diff-form"' in page
    assert first.sha[:8] in page and second.sha[:8] in page
    assert f"old={first.sha}" in page and f"new={second.sha}" in page  # latest diff on load
    diff = client.get(f"/devices/{device_id}/diff?old={first.sha}&new={second.sha}")
    body = diff.get_data(as_text=True)
    assert diff.status_code == 200
    assert 'id="diff-table"' in body and 'id="diff-form"' in body
    assert '<tr class="diff-changed">' in body and '<tr class="diff-added">' in body
    assert "2 changed lines" in body
    # the changed characters are marked inside a changed line
    assert "<mark> no</mark> shutdown" in body and "ip domain lab" in body
    partial = client.get(
        f"/devices/{device_id}/diff?old={first.sha}&new={second.sha}",
        headers={"HX-Request": "true"},
    ).get_data(as_text=True)
    assert partial.lstrip().startswith('<div id="config-diff"') and "<nav" not in partial
    same = client.get(f"/devices/{device_id}/diff?old={first.sha}&new={first.sha}")
    assert same.status_code == 200 and b'id="diff-identical"' in same.data
    version = client.get(f"/devices/{device_id}/config/{first.sha}")
    assert version.status_code == 200 and b" shutdown" in version.data
    bad = client.get(f"/devices/{device_id}/diff?old=zzzz&new={first.sha}")
    assert bad.status_code == 404 and b'id="diff-error"' in bad.data
    missing = client.get(f"/devices/{device_id}/diff?old=&new=")
    assert missing.status_code == 400 and b"Choose two versions" in missing.data
    unknown = client.get(f"/devices/{device_id}/config/{'a' * 40}")
    assert unknown.status_code == 404


def test_diffs_worth_sharing(client, auth, app):
    device_id = add_device(app, "r1")
    other_id = add_device(app, "r2")
    store = config_store.store_for(app)
    base = "".join(f"interface Gi0/{i}\n description port {i}\n" for i in range(30))
    first = store.commit_run(run_id=1, job_name="nightly", configs={"r1": base, "r2": "x\n"})
    changed = base.replace(" description port 15\n", " description uplink 15\n")
    second = store.commit_run(run_id=2, job_name="nightly", configs={"r1": changed})
    other = store.commit_run(run_id=3, job_name="nightly", configs={"r2": "y\n"})
    login(auth, "viewer")
    # Only "new" named: the diff is against the version before it; 3 lines of context.
    page = client.get(f"/devices/{device_id}/diff?new={second.sha[:10]}").get_data(as_text=True)
    assert f"{first.sha[:8]} &rarr; {second.sha[:8]}" in page
    assert page.count('<tr class="diff-equal">') == 6  # 3 above and 3 below the change
    assert "… 28 unchanged lines" in page and "… 25 unchanged lines" in page
    assert "context=all" in page and 'id="download-old"' in page
    full = client.get(f"/devices/{device_id}/diff?old={first.sha}&new={second.sha}&context=all")
    assert full.get_data(as_text=True).count('<tr class="diff-equal">') == 59
    unified = client.get(
        f"/devices/{device_id}/diff?old={first.sha}&new={second.sha}&view=unified"
    ).get_data(as_text=True)
    assert 'class="diff diff-unified"' in unified
    assert '<td class="diff-line">- description <mark>port</mark> 15</td>' in unified
    assert '<td class="diff-line">+ description <mark>uplink</mark> 15</td>' in unified
    download = client.get(f"/devices/{device_id}/config/{first.sha}/download")
    assert download.get_data(as_text=True) == base
    assert "attachment" in download.headers["Content-Disposition"]
    # A commit that is not a version of this device is refused, not shown as all added.
    refused = client.get(f"/devices/{device_id}/diff?old={first.sha}&new={other.sha}")
    assert refused.status_code == 404
    assert "is not a version of r1" in refused.get_data(as_text=True)
    # The first version of a device shows as added, against nothing.
    first_only = client.get(f"/devices/{other_id}/diff?new={first.sha}").get_data(as_text=True)
    assert "(the first stored version)" in first_only


# ------------------------------------------------------------------------ import


GOOD_AND_BAD_CSV = (
    "name,host,port,platform,tags\n"  # line 1
    "r1,10.0.0.1,22,cisco_ios,core;dc1\n"  # 2
    "r2,10.0.0.2,notaport,cisco_ios,core\n"  # 3: bad port
    "r3,10.0.0.3,22,foo_os,edge\n"  # 4: unknown platform
    "r5,r5.example.net,,arista_eos,edge|dc1\n"  # 5
)


def upload(client, data: dict):
    token = csrf_token(client, "/devices/import")
    return client.post(
        "/devices/import",
        data={"csrf_token": token, **data},
        content_type="multipart/form-data",
    )


def test_csv_import_shows_errors_by_line_and_imports_nothing(client, auth, app):
    login(auth, "operator")
    response = upload(
        client, {"kind": "csv", "csv_file": (io.BytesIO(GOOD_AND_BAD_CSV.encode()), "d.csv")}
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="import-error-3"' in body and 'id="import-error-4"' in body
    assert "Port must be a whole number" in body and "Unknown platform" in body
    assert "Nothing was imported" in body
    assert count(app, Device) == 0


def test_csv_import_only_the_good_rows(client, auth, app):
    login(auth, "operator")
    response = upload(
        client,
        {
            "kind": "csv",
            "partial": ["0", "1"],
            "csv_file": (io.BytesIO(GOOD_AND_BAD_CSV.encode()), "d.csv"),
        },
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "2 created, 0 updated, 0 unchanged, 2 bad rows skipped" in body
    assert 'id="import-error-3"' in body
    assert count(app, Device) == 2


def test_nornir_import_and_exports(client, auth, app):
    login(auth, "operator")
    hosts = "r1:\n  hostname: 10.0.0.1\n  platform: ios\n  groups: [core]\nr2:\n  platform: eos\n"
    groups = "core:\n  port: 2222\n"
    response = upload(
        client,
        {
            "kind": "nornir",
            "hosts_file": (io.BytesIO(hosts.encode()), "hosts.yaml"),
            "groups_file": (io.BytesIO(groups.encode()), "groups.yaml"),
        },
    )
    assert response.status_code == 422
    assert b'id="import-error-5"' in response.data and b"No hostname" in response.data
    response = upload(
        client,
        {
            "kind": "nornir",
            "partial": "1",
            "hosts_file": (io.BytesIO(hosts.encode()), "hosts.yaml"),
            "groups_file": (io.BytesIO(groups.encode()), "groups.yaml"),
        },
    )
    assert response.status_code == 200 and b"1 created" in response.data
    exported = client.get("/devices/export.csv")
    assert exported.status_code == 200
    assert exported.headers["Content-Disposition"] == 'attachment; filename="devices.csv"'
    assert exported.get_data(as_text=True).splitlines()[1].startswith("r1,10.0.0.1,2222,cisco_ios")
    yaml_hosts = client.get("/devices/export/hosts.yaml")
    assert yaml_hosts.status_code == 200 and b"hostname: 10.0.0.1" in yaml_hosts.data
    assert b"core: {}" in client.get("/devices/export/groups.yaml").data


def test_import_without_a_file_or_with_garbage(client, auth, app):
    login(auth, "operator")
    none = upload(client, {"kind": "csv"})
    assert none.status_code == 422 and b'id="error-csv_file"' in none.data
    kind = upload(client, {"kind": "xml"})
    assert kind.status_code == 422 and b'id="error-kind"' in kind.data
    binary = upload(client, {"kind": "csv", "csv_file": (io.BytesIO(b"\xff\xfe\x00"), "x.csv")})
    assert binary.status_code == 422 and b"not UTF-8" in binary.data
    yaml = upload(
        client, {"kind": "nornir", "hosts_file": (io.BytesIO(b"a: [unclosed"), "hosts.yaml")}
    )
    assert yaml.status_code == 422 and b"not valid YAML" in yaml.data
    assert count(app, Device) == 0
    assert client.get("/devices/import").status_code == 200


# -------------------------------------------------------------------------- tags


def test_tags_list_rename_delete(client, auth, app):
    login(auth, "viewer", "vera")
    assert b'id="no-tags"' in client.get("/devices/tags").data
    auth.logout()
    add_device(app, "r1", tags=["core", "edge"])
    login(auth, "operator")
    page = client.get("/devices/tags").get_data(as_text=True)
    assert "core" in page and "edge" in page
    with app.app_context():
        core = db.session.scalar(select(Tag.id).where(Tag.name == "core"))
        edge = db.session.scalar(select(Tag.id).where(Tag.name == "edge"))
    assert post(client, f"/devices/tags/{core}/rename", {"name": "backbone"}).status_code == 302
    taken = post(client, f"/devices/tags/{edge}/rename", {"name": "backbone"})
    assert taken.status_code == 409 and b"already exists" in taken.data
    assert b'id="error-tag-' in taken.data and b'value="backbone"' in taken.data
    bad = post(client, f"/devices/tags/{edge}/rename", {"name": "a,b"})
    assert bad.status_code == 422
    empty = post(client, f"/devices/tags/{edge}/rename", {"name": ""})
    assert empty.status_code == 422
    with app.app_context():
        credentials.create_credential("lab", "netops", SECRET_PASSWORD, tags=["edge"], actor="t")
    refused = post(client, f"/devices/tags/{edge}/delete")
    assert "scopes credential(s) lab; only an admin can delete it" in client.get(
        refused.headers["Location"]
    ).get_data(as_text=True)
    assert post(client, f"/devices/tags/{core}/delete").status_code == 302
    with app.app_context():
        assert db.session.scalars(select(Tag.name)).all() == ["edge"]


# ------------------------------------------------------------------- credentials


def test_credentials_list_empty_and_viewer_sees_no_buttons(client, auth, app):
    login(auth, "viewer")
    page = client.get("/credentials")
    assert page.status_code == 200 and b'id="no-credentials"' in page.data
    assert b'id="new-credential"' not in page.data
    with app.app_context():
        credentials.create_credential("lab", "netops", SECRET_PASSWORD, tags=["core"], actor="t")
    page = client.get("/credentials").get_data(as_text=True)
    assert "lab" in page and "netops" in page and "Edit" not in page
    assert SECRET_PASSWORD not in page


def test_credential_create_edit_delete_never_shows_secrets(client, auth, app):
    login(auth, "admin")
    bodies: list[str] = []
    created = post(
        client,
        "/credentials/new",
        {
            "name": "lab",
            "username": "netops",
            "password": SECRET_PASSWORD,
            "enable_secret": SECRET_ENABLE,
            "priority": "10",
            "tags": "core, edge",
        },
    )
    assert created.status_code == 302
    with app.app_context():
        cred = db.session.scalars(select(Credential)).one()
        cred_id = cred.id
        assert credentials.reveal(cred) == (SECRET_PASSWORD, SECRET_ENABLE)
    for path in ("/credentials", f"/credentials/{cred_id}/edit", "/audit"):
        response = client.get(path)
        assert response.status_code == 200, path
        bodies.append(response.get_data(as_text=True))
    assert "core" in bodies[0] and "netops" in bodies[0] and "10" in bodies[0]
    # Left empty, the change fields keep the stored secrets.
    saved = post(
        client,
        f"/credentials/{cred_id}/edit",
        {
            "name": "lab",
            "username": "admin2",
            "password": "",
            "enable_secret": "",
            "priority": "5",
            "tags": "core",
        },
    )
    assert saved.status_code == 302
    with app.app_context():
        cred = db.session.get(Credential, cred_id)
        assert cred.username == "admin2" and cred.priority == 5
        assert credentials.reveal(cred) == (SECRET_PASSWORD, SECRET_ENABLE)
    # A failing form re-renders without echoing the new secret typed.
    failed = post(
        client,
        f"/credentials/{cred_id}/edit",
        {
            "name": "",
            "username": "admin2",
            "password": "New-" + SECRET_PASSWORD,
            "enable_secret": "New-" + SECRET_ENABLE,
            "priority": "abc",
        },
    )
    body = failed.get_data(as_text=True)
    assert failed.status_code == 422
    assert 'id="error-name"' in body and 'id="error-priority"' in body
    assert 'value="admin2"' in body and 'value="abc"' in body
    bodies.append(body)
    cleared = post(
        client,
        f"/credentials/{cred_id}/edit",
        {
            "name": "lab",
            "username": "admin2",
            "priority": "5",
            "tags": "core",
            "clear_enable_secret": ["0", "1"],
        },
    )
    assert cleared.status_code == 302
    with app.app_context():
        assert credentials.reveal(db.session.get(Credential, cred_id)) == (SECRET_PASSWORD, None)
    bodies.append(client.get("/credentials").get_data(as_text=True))
    bodies.append(client.get("/audit").get_data(as_text=True))
    for body in bodies:
        assert SECRET_PASSWORD not in body and SECRET_ENABLE not in body
    assert post(client, f"/credentials/{cred_id}/delete").status_code == 302
    assert count(app, Credential) == 0


def test_credential_form_errors_and_duplicates(client, auth, app):
    login(auth, "admin")
    empty = post(client, "/credentials/new", {})
    body = empty.get_data(as_text=True)
    assert empty.status_code == 422
    for name in ("name", "username", "password"):
        assert f'id="error-{name}"' in body
    long = post(
        client,
        "/credentials/new",
        {"name": "n" * 200, "username": "u", "password": SECRET_PASSWORD, "priority": "5000"},
    )
    assert long.status_code == 422 and b'id="error-priority"' in long.data
    assert SECRET_PASSWORD.encode() not in long.data
    data = {"name": "lab", "username": "u", "password": SECRET_PASSWORD}
    assert post(client, "/credentials/new", data).status_code == 302
    again = post(client, "/credentials/new", data)
    assert again.status_code == 409 and b"already exists" in again.data
    assert SECRET_PASSWORD.encode() not in again.data
    assert count(app, Credential) == 1
    # A NUL byte in a password is refused, not dropped: a silently changed secret
    # would only fail later at the device.
    nul = post(client, "/credentials/new", {**data, "name": "lab2", "password": "a\x00b"})
    assert nul.status_code == 422 and b'id="error-password"' in nul.data
    assert count(app, Credential) == 1


# --------------------------------------------------------------------- job types


def test_job_types_page_lists_types_and_skipped_modules(client, auth, app, jobs_dir):
    login(auth, "viewer")
    page = client.get("/job-types").get_data(as_text=True)
    for job_type in ("config_backup", "reachability", "writer", "devjob"):
        assert f'id="jobtype-{job_type}"' in page
    assert "needs credentials" in page.lower()
    assert "token" in page and "secret" in page  # the writer's secret param is described


def test_job_types_page_shows_skipped_modules(client, auth, app_factory, engine_config, jobs_dir):
    (jobs_dir / "broken.py").write_text("raise RuntimeError('no import for you')\n")
    (jobs_dir / "nometa.py").write_text("def run(device, job_id, config, db):\n    return 'x'\n")
    other = app_factory({**engine_config, "ROOKERY_INSTANCE": engine_config["ROOKERY_INSTANCE"]})
    with other.test_client() as c:
        from tests.conftest import AuthActions

        actions = AuthActions(other, c)
        actions.create("vic", "correct-horse", "viewer")
        actions.login("vic", "correct-horse")
        page = c.get("/job-types").get_data(as_text=True)
    assert 'id="skipped-modules"' in page
    assert "broken.py" in page and "nometa.py" in page and "JOB_META" in page
