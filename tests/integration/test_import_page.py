"""The device import page through the Flask test client: one panel per format, sample
files that import cleanly, the HTMX result swap that keeps the chosen file, and "did you
mean" for an unknown platform wherever a device is validated (import, form, API)."""

from __future__ import annotations

import html
import io
import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app import platforms
from app.extensions import db
from app.models import Device
from app.services import inventory
from tests.conftest import csrf_token
from tests.integration.test_api_support import Api, error, make_tokens
from tests.integration.test_pages_inventory import count, login, post

HTMX = {"HX-Request": "true", "HX-Target": "import-result"}
#: the five devices of the samples: name -> (host, port, platform, tags, enabled, notes)
SAMPLE_DEVICES = {
    "core-sw1": ("192.0.2.11", 22, "cisco_ios", ["core", "dc1"], True, "Core switch in rack A1"),
    "core-sw2": ("192.0.2.12", 22, "cisco_xe", ["core", "dc1"], True, ""),
    "edge-r1": (
        "192.0.2.21",
        22,
        "juniper_junos",
        ["dc1", "edge"],
        True,
        "Internet edge, uplink 1",
    ),
    "leaf1": ("192.0.2.31", 2222, "arista_eos", ["dc2", "leaf"], True, ""),
    "lab-nx1": ("127.0.0.1", 10022, "cisco_nxos", ["lab"], False, "Lab emulator, off until needed"),
}
IOSXE_CSV = (
    "name,host,platform\n"  # line 1
    "r1,192.0.2.1,cisco_ios\n"  # 2
    "r2,192.0.2.2,cisco_iosxe\n"  # 3: cisco_xe meant
    "r3,192.0.2.3,toaster\n"  # 4: nothing close
)


def upload(client, data: dict, headers: dict | None = None):
    token = csrf_token(client, "/devices/import")
    return client.post(
        "/devices/import",
        data={"csrf_token": token, **data},
        content_type="multipart/form-data",
        headers=headers or {},
    )


def text(response) -> str:
    """A page's text with its entities read (Jinja writes ' as &#39;)."""
    return html.unescape(response.get_data(as_text=True))


def sample(client, url: str) -> bytes:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.data


def devices(app) -> dict[str, tuple]:
    with app.app_context():
        rows = db.session.scalars(select(Device).options(selectinload(Device.tags)))
        return {
            d.name: (d.host, d.port, d.platform, sorted(t.name for t in d.tags), d.enabled, d.notes)
            for d in rows
        }


def test_the_page_shows_the_chosen_format_and_every_valid_platform(client, auth, app):
    login(auth, "operator")
    page = client.get("/devices/import").get_data(as_text=True)
    assert re.search(r'id="kind-csv" checked', page) and not re.search(
        r'id="kind-nornir" checked', page
    )
    # Both panels are in the page; the stylesheet shows the checked format's (the browser test
    # sees it), so a browser without :has() still shows both.
    assert 'data-kind="csv"' in page and 'data-kind="nornir"' in page
    assert 'href="/devices/import/sample.csv"' in page
    assert 'href="/devices/import/sample-hosts.yaml"' in page
    assert 'href="/devices/import/sample-groups.yaml"' in page
    listed = re.search(r'id="valid-platform-list">([^<]*)<', page).group(1).split(", ")
    assert listed == sorted(inventory.netmiko_platforms()) and "cisco_xe" in listed
    nornir = client.get("/devices/import?kind=nornir").get_data(as_text=True)
    assert re.search(r'id="kind-nornir" checked', nornir)
    # The format chosen before a whole-page answer stays chosen.
    failed = upload(client, {"kind": "nornir"})
    assert failed.status_code == 422 and re.search(r'id="kind-nornir" checked', text(failed))


def test_sample_files_download_and_import_cleanly(client, auth, app):
    login(auth, "viewer", "watcher")  # a viewer may read the samples
    csv_sample = client.get("/devices/import/sample.csv")
    assert csv_sample.status_code == 200 and csv_sample.mimetype == "text/csv"
    assert csv_sample.headers["Content-Disposition"] == 'attachment; filename="devices.csv"'
    hosts = client.get("/devices/import/sample-hosts.yaml")
    assert hosts.headers["Content-Disposition"] == 'attachment; filename="hosts.yaml"'
    groups = client.get("/devices/import/sample-groups.yaml")
    assert groups.headers["Content-Disposition"] == 'attachment; filename="groups.yaml"'
    assert client.get("/devices/import/sample.txt").status_code == 404
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})

    login(auth, "operator")
    imported = upload(
        client, {"kind": "csv", "csv_file": (io.BytesIO(csv_sample.data), "devices.csv")}
    )
    assert imported.status_code == 200, text(imported)
    assert "5 created, 0 updated, 0 unchanged, 0 bad rows." in text(imported)
    assert devices(app) == SAMPLE_DEVICES
    # The Nornir samples describe the same five devices.
    again = upload(
        client,
        {
            "kind": "nornir",
            "hosts_file": (io.BytesIO(hosts.data), "hosts.yaml"),
            "groups_file": (io.BytesIO(groups.data), "groups.yaml"),
        },
    )
    assert again.status_code == 200, text(again)
    assert "0 created, 0 updated, 5 unchanged, 0 bad rows." in text(again)


def test_the_nornir_sample_alone_imports_cleanly(client, auth, app):
    login(auth, "operator")
    imported = upload(
        client,
        {
            "kind": "nornir",
            "hosts_file": (
                io.BytesIO(sample(client, "/devices/import/sample-hosts.yaml")),
                "h.yaml",
            ),
            "groups_file": (
                io.BytesIO(sample(client, "/devices/import/sample-groups.yaml")),
                "g.yaml",
            ),
        },
    )
    assert imported.status_code == 200 and "5 created" in text(imported)
    assert devices(app) == SAMPLE_DEVICES


def test_samples_need_a_login(client):
    response = client.get("/devices/import/sample.csv")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_htmx_post_answers_with_the_result_alone(client, auth, app):
    login(auth, "operator")
    bad = upload(
        client, {"kind": "csv", "csv_file": (io.BytesIO(IOSXE_CSV.encode()), "fleet.csv")}, HTMX
    )
    body = text(bad)
    assert bad.status_code == 422
    assert body.lstrip().startswith('<div id="import-result"')
    assert "<form" not in body and "<html" not in body  # the form, its chosen file, stays
    assert 'id="import-error-3"' in body and 'id="import-error-4"' in body
    assert 'id="import-file">fleet.csv<' in body
    assert "Nothing was imported: 2 bad row(s)." in body
    assert count(app, Device) == 0
    good = upload(
        client,
        {
            "kind": "csv",
            "partial": ["0", "1"],
            "csv_file": (io.BytesIO(IOSXE_CSV.encode()), "fleet.csv"),
        },
        HTMX,
    )
    assert good.status_code == 200
    assert "1 created, 0 updated, 0 unchanged, 2 bad rows skipped." in text(good)
    assert 'id="import-devices-link"' in text(good)
    missing = upload(client, {"kind": "csv"}, HTMX)
    assert missing.status_code == 422 and "Choose a CSV file to import." in text(missing)
    assert "<form" not in text(missing)
    # A boosted navigation (not the form's own post) gets the whole page.
    boosted = upload(client, {"kind": "csv"}, {"HX-Request": "true", "HX-Boosted": "true"})
    assert boosted.status_code == 422 and 'id="import-form"' in text(boosted)


def test_a_whole_page_error_names_the_files_chosen(client, auth, app):
    login(auth, "operator")
    bad = upload(client, {"kind": "csv", "csv_file": (io.BytesIO(IOSXE_CSV.encode()), "fleet.csv")})
    body = text(bad)
    assert bad.status_code == 422 and 'id="import-form"' in body
    assert re.search(r'id="chosen-csv_file">You chose fleet\.csv: choose it again', body)
    nornir = upload(
        client,
        {
            "kind": "nornir",
            "hosts_file": (io.BytesIO(b"r1:\n  platform: ios\n"), "hosts.yaml"),
            "groups_file": (io.BytesIO(b"core: {}\n"), "groups.yaml"),
        },
    )
    body = text(nornir)
    assert nornir.status_code == 422
    assert 'id="chosen-hosts_file">You chose hosts.yaml' in body
    assert 'id="chosen-groups_file">You chose groups.yaml' in body
    assert 'id="chosen-defaults_file"' not in body


def test_an_unknown_platform_in_an_import_says_what_was_meant(client, auth, app):
    login(auth, "operator")
    response = upload(
        client, {"kind": "csv", "csv_file": (io.BytesIO(IOSXE_CSV.encode()), "fleet.csv")}
    )
    body = text(response)
    assert response.status_code == 422
    assert (
        "Unknown platform 'cisco_iosxe'. Did you mean 'cisco_xe'? Valid: "
        f"{', '.join(platforms.PROFILED)}, or another of netmiko's"
    ) in body
    row = re.search(r'<tr id="import-error-4">(.*?)</tr>', body, re.S).group(1)
    assert "Unknown platform 'toaster'. Valid: alcatel_aos" in row and "Did you mean" not in row
    nornir = upload(
        client,
        {
            "kind": "nornir",
            "hosts_file": (
                io.BytesIO(b"r1:\n  hostname: 192.0.2.1\n  platform: iosxe\n"),
                "h.yaml",
            ),
        },
    )
    assert nornir.status_code == 422
    assert "Unknown platform 'iosxe'. Did you mean 'cisco_xe'?" in text(nornir)
    assert count(app, Device) == 0


def test_the_device_form_says_what_was_meant(client, auth, app):
    login(auth, "operator")
    response = post(
        client, "/devices/new", {"name": "r1", "host": "192.0.2.1", "platform": "Cisco_IOSXE"}
    )
    assert response.status_code == 422
    error_text = re.search(r'id="error-platform">([^<]*)<', text(response)).group(1)
    assert error_text.startswith("Unknown platform 'cisco_iosxe'. Did you mean 'cisco_xe'? Valid:")
    assert count(app, Device) == 0


def test_the_api_says_what_was_meant(app, client):
    api = Api(client=client, tokens=make_tokens(app))
    body = {"name": "r1", "host": "192.0.2.1", "platform": "cisco_iosxe"}
    created = error(api.post("/api/v1/devices", json=body), 422)
    assert created["fields"]["platform"].startswith(
        f"Unknown platform 'cisco_iosxe'. Did you mean 'cisco_xe'? Valid: {platforms.PROFILED[0]}, "
    )
    imported = error(
        api.post("/api/v1/imports", json={"format": "csv", "csv": IOSXE_CSV}, as_="operator"), 422
    )
    messages = {e["line"]: e["message"] for e in imported["errors"]}
    assert messages[3].startswith("Unknown platform 'cisco_iosxe'. Did you mean 'cisco_xe'?")
    assert messages[4].startswith(f"Unknown platform 'toaster'. Valid: {platforms.PROFILED[0]}, ")


@pytest.mark.parametrize(
    ("name", "meant"),
    (
        ("cisco_iosxe", "cisco_xe"),  # an alias
        ("cisco_iosxe_ssh", "cisco_xe"),
        ("ios", "cisco_ios"),  # NAPALM's names
        ("junos", "juniper_junos"),
        ("IOS-XE", "cisco_xe"),  # a product name
        ("cisco_ios_xr", "cisco_xr"),
        ("cisco-ios", "cisco_ios"),  # the same letters
        ("aristaeos", "arista_eos"),
        ("hp_procurv", "hp_procurve"),  # a typo
        ("junipr", "juniper_junos"),  # a typo of an alias: the canonical name
        ("huawei_vrp8", "huawei_vrpv8"),
        ("toaster", None),
        ("cisco", None),  # too many are close: none
    ),
)
def test_suggest(name: str, meant: str | None) -> None:
    assert platforms.suggest(name) == meant  # among every known platform


def test_rookery_profiles_and_suggests_only_valid_platforms() -> None:
    assert set(platforms.PROFILED) <= inventory.netmiko_platforms()
    assert set(platforms.NAPALM.values()) <= inventory.netmiko_platforms()
    assert set(platforms.SPOKEN.values()) <= inventory.netmiko_platforms()
