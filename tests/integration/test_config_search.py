"""Search across every device's latest config, kept in PostgreSQL by each backup's commit:
plain text or a regular expression, case, context lines, tag and platform filters, each
line linking to its version. Real FakeNOS devices on 127.0.0.1 and a real git store."""

from __future__ import annotations

from app.demo_lab import default_fleet
from app.services import config_search, inventory, jobs, runs
from tests.integration import test_run_commands
from tests.integration.helpers import drain, load_lab_devices
from tests.integration.test_api_support import Api, error, make_tokens, ok

pytest_plugins = ["tests.devices"]

app = test_run_commands.app
ctx = test_run_commands.ctx


def _backed_up_lab(app, device_lab_factory):
    ios, eos = default_fleet(2, ["cisco_ios", "arista_eos"])
    lab = device_lab_factory([ios, eos])
    lab.set_config(
        ios.name,
        lab.config_of(ios.name)
        + "ntp server 192.0.2.10 prefer\ninterface Gi0/9\n description Uplink\n",
    )
    load_lab_devices(lab.devices, lab)
    job = jobs.create_job(name="nightly", job_type="config_backup", target_tags=["lab"], actor="t")
    runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    return lab, job, ios, eos


def test_search_finds_lines_with_context_and_follows_the_next_backup(
    app, ctx, client, device_lab_factory
):
    lab, job, ios, eos = _backed_up_lab(app, device_lab_factory)
    api = Api(client=client, tokens=make_tokens(app))
    found = ok(api.get("/api/v1/configs/search?q=ntp+server+192.0.2.10&context=1", as_="viewer"))
    assert [i["device"]["name"] for i in found["items"]] == [ios.name]
    match = found["items"][0]["matches"][0]
    assert match["line"] == "ntp server 192.0.2.10 prefer"
    assert len(match["before"]) == 1 and match["after"] == ["interface Gi0/9"]
    assert found["searched"] == 2
    commit = found["items"][0]["commit"]

    assert ok(api.get("/api/v1/configs/search?q=NTP+SERVER&case=true", as_="viewer"))["items"] == []
    regex = ok(api.get("/api/v1/configs/search?q=%5Einterface+Gi0%2F%5B0-9%5D%24&regex=true"))
    assert ios.name in [i["device"]["name"] for i in regex["items"]]
    by_platform = ok(api.get("/api/v1/configs/search?q=hostname&platform=arista_eos"))
    assert [i["device"]["name"] for i in by_platform["items"]] == [eos.name]
    bad = error(api.get("/api/v1/configs/search?q=(unclosed&regex=true"), 422)
    assert "regular expression" in bad["message"]

    # The next backup without the line: the device no longer matches.
    lab.set_config(ios.name, lab.config_of(ios.name).replace("ntp server 192.0.2.10 prefer\n", ""))
    runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    assert ok(api.get("/api/v1/configs/search?q=ntp+server+192.0.2.10"))["items"] == []

    hits = config_search.search("description Uplink", case=True)
    mine = next(item for item in hits.items if item.device_name == ios.name)
    assert mine.commit != commit  # the row follows the newest commit that changed it


def test_search_page_links_each_line_to_its_version(app, ctx, client, auth, device_lab_factory):
    _, _, ios, _ = _backed_up_lab(app, device_lab_factory)
    auth.create("vera", "viewer-pw-1", "viewer")
    auth.login("vera", "viewer-pw-1")
    page = client.get("/configs/search?q=ntp+server+192.0.2.10&context=2").get_data(as_text=True)
    device = inventory.get_by_name(ios.name)
    assert f'id="search-device-{device.id}"' in page
    link = page.split('class="search-hit"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert link.startswith(f"/devices/{device.id}/config/") and "#L" in link
    version = client.get(link.split("#")[0]).get_data(as_text=True)
    line_no = link.split("#L")[1]
    numbered = f'<span class="line-no" aria-hidden="true">{line_no}</span>'
    assert f'id="L{line_no}">{numbered}ntp server 192.0.2.10 prefer' in version
    bad = client.get("/configs/search?q=(x&regex=1")
    assert bad.status_code == 422 and 'id="error-q"' in bad.get_data(as_text=True)
    none = client.get("/configs/search?q=no-such-line-anywhere").get_data(as_text=True)
    assert 'id="no-matches"' in none
