"""Backup health at a glance: each device's latest backup in the API and the device list,
filters for stale, failing and never-backed-up devices, a dashboard card, and "Back up
now" / "Run on this device" on the device page. Real FakeNOS devices on 127.0.0.1."""

from __future__ import annotations

import html as html_lib
import re
from datetime import timedelta

from app.demo_lab import default_fleet
from app.extensions import db
from app.models import DeviceBackup, utcnow
from app.services import inventory, jobs, runs
from app.views import devices as device_views
from tests.conftest import csrf_token
from tests.integration import test_run_commands
from tests.integration.helpers import drain, load_lab_devices, reload
from tests.integration.test_api_support import Api, make_tokens, ok

pytest_plugins = ["tests.devices"]

app = test_run_commands.app
ctx = test_run_commands.ctx


def test_backup_state_in_api_list_filters_and_dashboard(app, ctx, client, device_lab_factory):
    ios, eos = default_fleet(2, ["cisco_ios", "arista_eos"])
    lab = device_lab_factory([ios, eos])
    load_lab_devices(lab.devices, lab)
    api = Api(client=client, tokens=make_tokens(app))
    never = ok(api.get("/api/v1/devices?backup=never", as_="viewer"))["items"]
    assert sorted(d["name"] for d in never) == sorted([ios.name, eos.name])
    assert all(d["last_backup"] is None for d in never)

    job = jobs.create_job(
        name="nightly", job_type="config_backup", target_tags=["lab"], actor="test"
    )
    lab.stop_device(eos.name)  # it no longer answers: its backup fails
    first = runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    by_name = {d["name"]: d for d in ok(api.get("/api/v1/devices", as_="viewer"))["items"]}
    good = by_name[ios.name]["last_backup"]
    assert good["status"] == "success" and good["run_id"] == first.id
    assert good["commit"] and good["last_success_at"] == good["at"]
    bad = by_name[eos.name]["last_backup"]
    assert bad["status"] != "success" and bad["last_success_at"] is None
    failing = ok(api.get("/api/v1/devices?backup=failing", as_="viewer"))["items"]
    assert [d["name"] for d in failing] == [eos.name]
    stale = ok(api.get("/api/v1/devices?backup=stale", as_="viewer"))["items"]
    assert [d["name"] for d in stale] == [eos.name]
    fresh = ok(api.get("/api/v1/devices?backup=fresh", as_="viewer"))["items"]
    assert [d["name"] for d in fresh] == [ios.name]
    assert ok(api.get("/api/v1/devices?backup=never", as_="viewer"))["items"] == []

    # An unchanged config on the next backup keeps the commit that holds it.
    second = runs.start_run(job, triggered_by="test", device_ids=[by_name[ios.name]["id"]])
    drain(app)
    again = ok(api.get(f"/api/v1/devices/{by_name[ios.name]['id']}", as_="viewer"))
    assert again["last_backup"]["run_id"] == second.id
    assert again["last_backup"]["commit"] == good["commit"]
    assert reload(second.id).status == "COMPLETED_SUCCESS"


def test_device_page_backs_up_now_and_runs_a_job_on_the_device(
    app, ctx, client, auth, device_lab_factory
):
    (ios,) = default_fleet(1, ["cisco_ios"])
    lab = device_lab_factory([ios])
    load_lab_devices(lab.devices, lab)
    device = inventory.get_by_name(ios.name)
    auth.create("olga", "operator-pw-1", "operator")
    auth.login("olga", "operator-pw-1")
    page = client.get(f"/devices/{device.id}").get_data(as_text=True)
    assert 'id="backup-now" disabled' in page  # no backup job yet
    refused = client.post(
        f"/devices/{device.id}/backup",
        data={"csrf_token": csrf_token(client, f"/devices/{device.id}")},
        follow_redirects=True,
    )
    assert "No config backup job yet" in refused.get_data(as_text=True)

    jobs.create_job(name="nightly", job_type="config_backup", target_tags=["other"], actor="t")
    show = jobs.create_job(
        name="versions",
        job_type="run_commands",
        target_tags=["other"],
        params={"commands": ["show version"]},
        actor="t",
    )
    started = client.post(
        f"/devices/{device.id}/backup",
        data={"csrf_token": csrf_token(client, f"/devices/{device.id}")},
    )
    assert started.status_code == 302 and "/runs/" in started.headers["Location"]
    run_id = int(started.headers["Location"].rsplit("/", 1)[1])
    assert reload(run_id).device_ids == [device.id]
    drain(app)
    assert reload(run_id).status == "COMPLETED_SUCCESS"
    page = client.get(f"/devices/{device.id}").get_data(as_text=True)
    assert 'id="last-backup"' in page and "Success" in page

    ran = client.post(
        f"/devices/{device.id}/run",
        data={"csrf_token": csrf_token(client, f"/devices/{device.id}"), "job_id": show.id},
    )
    other_run = int(ran.headers["Location"].rsplit("/", 1)[1])
    drain(app)
    assert reload(other_run).device_ids == [device.id]
    assert reload(other_run).status == "COMPLETED_SUCCESS"
    listing = client.get("/devices?backup=fresh").get_data(as_text=True)
    assert f'id="last-backup-{device.id}"' in listing
    dashboard = client.get("/").get_data(as_text=True)
    assert 'id="backups-fresh-count">1<' in dashboard


def test_demo_drift_makes_the_next_backup_commit_a_change(app, ctx, device_lab_factory):
    from app.demo_lab import drift_once

    fleet = default_fleet(2, ["cisco_ios", "juniper_junos"])
    lab = device_lab_factory(fleet)
    load_lab_devices(lab.devices, lab)
    job = jobs.create_job(name="nightly", job_type="config_backup", target_tags=["lab"], actor="t")
    runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    changed = {drift_once(lab, 1), drift_once(lab, 2)}
    again = runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    results = test_run_commands.results(again.id)
    assert changed == {d.name for d in fleet}
    assert all(r.changed and r.commit_sha for r in results.values()), results


def test_device_list_sorts_by_last_backup_across_pages(app, ctx, client, auth, monkeypatch):
    """Stale devices first (never, then the oldest success), paged by keyset both ways;
    the other way round with a second click; the API takes the same order."""
    now = utcnow()
    ages = {"r1": 5, "r2": None, "r3": 50, "r4": 1, "r5": 50, "r6": None}  # hours, None: never
    for name, hours in ages.items():
        device = inventory.create_device(
            name=name, host="127.0.0.1", platform="cisco_ios", actor="t"
        )
        if hours is not None:
            at = now - timedelta(hours=hours)
            db.session.add(
                DeviceBackup(
                    device_id=device.id, last_at=at, last_status="success", last_success_at=at
                )
            )
    db.session.commit()
    stale_first = ["r2", "r6", "r3", "r5", "r1", "r4"]
    auth.create("vera", "viewer-pw-1", "viewer")
    auth.login("vera", "viewer-pw-1")
    monkeypatch.setattr(device_views, "PAGE_SIZE", 4)

    def names(html: str) -> list[str]:
        return re.findall(r'<tr id="device-\d+">\s*<td><a href="[^"]+">(r\d)</a>', html)

    def link(html: str, link_id: str) -> str:
        tag = re.search(rf'<a[^>]*id="{link_id}"', html).group(0)
        return html_lib.unescape(re.search(r'href="([^"]+)"', tag).group(1))

    first = client.get("/devices?sort=last_backup").get_data(as_text=True)
    assert names(first) == stale_first[:4]
    assert 'aria-sort="ascending"' in first and "sort=-last_backup" in first
    second = client.get(link(first, "next-page")).get_data(as_text=True)
    assert names(second) == stale_first[4:]
    back = client.get(link(second, "prev-page")).get_data(as_text=True)
    assert names(back) == stale_first[:4]

    newest_first = client.get("/devices?sort=-last_backup").get_data(as_text=True)
    assert names(newest_first) == ["r4", "r1", "r3", "r5"]
    # stale filter with its own hours: no success within 10 h
    stale = client.get("/devices?backup=stale&hours=10&sort=last_backup").get_data(as_text=True)
    assert names(stale) == ["r2", "r6", "r3", "r5"]
    assert 'value="10"' in stale
    # a cursor edited by hand is the first page, not an error
    assert client.get("/devices?sort=last_backup&after=garbage").status_code == 200

    api = Api(client=client, tokens=make_tokens(app))
    items = ok(api.get("/api/v1/devices?sort=last_backup", as_="viewer"))["items"]
    assert [d["name"] for d in items] == stale_first
    assert api.get("/api/v1/devices?sort=size", as_="viewer").status_code == 422
