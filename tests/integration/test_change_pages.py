"""A change's page applies it and follows its rollout: the Apply button (operators, an
approved change not being applied), its run started once, refusals flashed, viewers
refused, and the rollout section polling until the run ends, on the stateful cisco_ios
emulator (127.0.0.1) with a real run drained in-process."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Device
from app.services import changes
from tests.conftest import csrf_token, make_config
from tests.integration.change_lab import BGP_UP, TEMPLATE
from tests.integration.helpers import drain, reload

pytest_plugins = ["tests.integration.change_fixtures"]

ENDED = ("COMPLETED_SUCCESS", "COMPLETED_PARTIAL_FAILURE", "COMPLETED_FAILURE")


@pytest.fixture
def engine_config(database_url, tmp_path, jobs_dir):
    return make_config(
        database_url,
        tmp_path / "instance",
        ROOKERY_JOBS_PATH=str(jobs_dir),
        ROOKERY_CONFIG_REPO=str(tmp_path / "configs"),
        ROOKERY_DEFAULT_RETRIES=0,
        ROOKERY_SSH_CONNECT_TIMEOUT=5,
        ROOKERY_CONNECT_RETRIES=0,
    )


@pytest.fixture
def rita(client, auth):
    """An operator who did not write the changes, logged in."""
    auth.create("olga", "author-password-1", "operator")
    auth.create("rita", "reviewer-pw-1", "operator")
    assert auth.login("rita", "reviewer-pw-1").status_code in (302, 303)
    return client


def drafted(**overrides) -> int:
    fields = {
        "name": "NTP and loopbacks",
        "target_tags": ["lab"],
        "template": TEMPLATE,
        "variables": {"note": "managed"},
        "checks": [BGP_UP],
        "canary": 1,
        "wave_size": 2,
        **overrides,
    }
    return changes.create_change(actor="olga", **fields).id


def approved(**overrides) -> int:
    change_id = drafted(**overrides)
    changes.submit(change_id, actor="olga")
    changes.review(change_id, actor="rita", approve=True)
    return change_id


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def post_apply(client, change_id: int) -> str:
    token = csrf_token(client, f"/changes/{change_id}")
    response = client.post(
        f"/changes/{change_id}/apply", data={"csrf_token": token}, follow_redirects=True
    )
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def row_states(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr id="rollout-device-([^"]+)" data-state="([^"]+)"', html))


def test_apply_shows_once_approved_starts_one_run_and_the_rollout_follows_it(app, ctx, rita, lab):
    change_id = drafted()
    shown = page(rita, f"/changes/{change_id}")
    assert 'id="apply-change"' not in shown and 'id="rollout-none"' in shown
    changes.submit(change_id, actor="olga")
    assert 'id="apply-change"' not in page(rita, f"/changes/{change_id}")
    changes.review(change_id, actor="rita", approve=True)
    shown = page(rita, f"/changes/{change_id}")
    assert 'id="apply-change"' in shown
    assert "to 3 devices? The canary (ios-001) goes first, then waves of 2" in shown

    started = post_apply(rita, change_id)
    run_id = changes.get_change(change_id).run_id
    assert run_id is not None
    assert f"is being applied by run #{run_id}" in started
    assert 'id="change-status">applying<' in started
    assert 'id="apply-change"' not in started
    assert 'hx-trigger="every 2s"' in started
    assert row_states(started) == dict.fromkeys(["ios-001", "ios-002", "ios-003"], "pending")
    assert started.index(">Canary <") < started.index("ios-001") < started.index(">Wave 1 <")
    assert started.index(">Wave 1 <") < started.index('id="rollout-device-ios-002"')
    # a second Apply while the first run is queued: the service's refusal, no second run
    again = post_apply(rita, change_id)
    assert f"is being applied by run #{run_id}" in again and "wait for it or cancel it" in again
    assert changes.get_change(change_id).run_id == run_id

    drain(app, concurrency=2)
    assert reload(run_id).status == "COMPLETED_SUCCESS"
    fragment = page(rita, f"/changes/{change_id}/rollout")
    assert row_states(fragment) == dict.fromkeys(["ios-001", "ios-002", "ios-003"], "applied")
    assert "hx-trigger" not in fragment  # the run ended: the polling stops
    assert 'hx-swap-oob="true" id="change-status">applied<' in fragment
    assert "3 devices:" in fragment and "3 applied" in fragment
    assert f'href="/runs/{run_id}"' in fragment
    assert fragment.count('class="rollout-before"') == 3
    assert fragment.count('class="rollout-after"') == 3
    after = re.search(r'class="rollout-after" href="(/devices/\d+/config/[0-9a-f]+)"', fragment)
    assert after and "ntp server 192.0.2.123" in page(rita, after.group(1))
    link = re.search(r'class="rollout-diff" href="([^"]+)"', fragment)
    assert link, fragment
    diff = page(rita, link.group(1).replace("&amp;", "&"))
    assert 'id="diff-error"' not in diff and "nothing &rarr;" not in diff
    assert re.search(r'<tr class="diff-added">(?:(?!</tr>).)*ntp server 192\.0\.2\.123', diff, re.S)
    for device in lab.devices:
        assert "ntp server 192.0.2.123" in lab.config_of(device.name)
    listed = page(rita, "/changes")
    assert 'data-status="applied">applied<' in listed


def test_a_failed_rollback_is_red_and_asks_for_a_person(app, ctx, rita, lab):
    lab.break_rollback("ios-001")
    lab.fail_command("ios-001", r"^no ntp server", where="config")  # line by line fails too
    ios_001 = db.session.scalar(select(Device.id).where(Device.name == "ios-001"))
    change_id = approved(
        template=TEMPLATE.replace("{{ note }}", "BREAKS-BGP"),
        target_tags=[],
        target_device_ids=[ios_001],
    )
    post_apply(rita, change_id)
    drain(app)
    assert reload(changes.get_change(change_id).run_id).status in ENDED
    shown = page(rita, f"/changes/{change_id}")
    assert 'id="change-status">failed<' in shown
    assert row_states(shown) == {"ios-001": "rollback_failed"}
    row = re.search(r'<tr id="rollout-device-ios-001"[^>]*>.*?</tr>', shown, re.S)
    assert row and 'class="rollout-needs-person"' in row.group(0)
    assert "badge-rollout-rollback_failed" in row.group(0) and "needs a person" in row.group(0)
    assert "ROLLBACK FAILED" in row.group(0)
    assert 'id="rollout-needs-person"' in shown and "1 device needs a person" in shown
    css = (Path(app.static_folder) / "rookery.css").read_text()
    for red in (".badge-rollout-rollback_failed", ".badge-change-failed"):
        assert re.search(re.escape(red) + r" \{ background: #dc2626; \}", css), red


def test_viewers_cannot_apply_and_a_refusal_is_a_message(app, ctx, client, rita, auth, lab):
    draft_id = drafted()
    refused = post_apply(rita, draft_id)
    assert "only an approved change is applied" in refused
    assert changes.get_change(draft_id).run_id is None
    change_id = approved(name="approved one")
    assert rita.post(f"/changes/{change_id}/apply", data={}).status_code == 400  # no CSRF
    token = csrf_token(rita, f"/changes/{change_id}")
    assert rita.post("/changes/999999/apply", data={"csrf_token": token}).status_code == 404

    auth.logout()
    auth.create("vera", "viewer-pw-123", "viewer")
    assert auth.login("vera", "viewer-pw-123").status_code in (302, 303)
    shown = page(client, f"/changes/{change_id}")
    assert 'id="apply-change"' not in shown and "vera (viewer)" in shown
    token = csrf_token(client, f"/changes/{change_id}")
    assert client.post(f"/changes/{change_id}/apply", data={"csrf_token": token}).status_code == 403
    assert changes.get_change(change_id).run_id is None


def test_the_form_drafts_a_change_and_an_edit_keeps_its_secret(app, ctx, client, rita, lab):
    """New change from the page: targets, variables (one secret), checks as lines, the
    rollout; a line that cannot be read is an error next to its field and nothing is
    saved; editing shows the secret as *** and saving it back keeps the value."""
    token = csrf_token(client, "/changes/new")
    form = {
        "csrf_token": token,
        "name": "Core SNMP",
        "description": "",
        "target_tags": "",
        "target_devices": "ios-001 ios-002",
        "template": "snmp-server community {{ community }} RO\nntp server {{ ntp }}\n",
        "variables": "community = Very-Secret-1\nntp = 192.0.2.9",
        "secret_variables": "community",
        "checks": "after: show running-config | include ntp ~ ntp server 192\\.0\\.2\\.9\n"
        "show ip bgp summary !~ Idle",
        "canary": "1",
        "wave_size": "5",
        "pause_seconds": "0",
        "max_failed": "1",
        "rollback": "all",
        "reachability": ["0", "1"],
    }
    bad = client.post(
        "/changes/new", data={**form, "checks": "show version", "target_devices": "ghost"}
    )
    assert bad.status_code == 422
    page = bad.get_data(as_text=True)
    assert "Line 1: write COMMAND ~ PATTERN" in page and "No device named ghost" in page
    assert changes.list_changes() == []

    saved = client.post("/changes/new", data=form)
    assert saved.status_code in (302, 303), saved.get_data(as_text=True)[:2000]
    (change,) = changes.list_changes()
    view = changes.view(change)
    assert view["variables"] == {"community": "***", "ntp": "192.0.2.9"}
    assert [d["name"] for d in view["targets"]["devices"]] == ["ios-001", "ios-002"]
    assert view["checks"] == [
        {
            "command": "show running-config | include ntp",
            "expect": r"ntp server 192\.0\.2\.9",
            "absent": False,
            "when": "after",
        },
        {"command": "show ip bgp summary", "expect": "Idle", "absent": True, "when": "both"},
    ]
    assert (view["rollback"], view["reachability"], view["canary"]) == ("all", True, 1)

    edit_page = client.get(f"/changes/{change.id}/edit").get_data(as_text=True)
    assert "community = ***" in edit_page and "Very-Secret-1" not in edit_page
    values = {**form, "variables": "community = ***\nntp = 192.0.2.10"}
    assert client.post(f"/changes/{change.id}/edit", data=values).status_code in (302, 303)
    db.session.expire_all()
    edited = changes.get_change(change.id)
    assert changes.secret_values(edited) == ["Very-Secret-1"]
    assert edited.version == 2
    show = client.get(f"/changes/{change.id}").get_data(as_text=True)
    assert "community = *** (secret)" in show and "Very-Secret-1" not in show
