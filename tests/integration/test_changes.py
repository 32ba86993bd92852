"""Change sets before they reach a device: drafts, the per-device preview computed with
hier_config from each device's latest backup (FakeNOS configs in a real git store), the
review by a second person, an edit withdrawing an approval, and bad input refused with
nothing written. The preview reads the backups: it connects to no device."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from app.demo_lab import default_fleet
from app.extensions import db
from app.models import AuditEntry, Change, Job
from app.services import changes, jobs, runs
from tests.conftest import csrf_token, make_config
from tests.integration.helpers import drain, load_lab_devices, reload
from tests.integration.test_api_support import Api, error, make_tokens, ok

pytest_plugins = ["tests.devices"]

TEMPLATE = """ntp server {{ ntp }}
interface Loopback0
 description {{ device.name }} managed by {{ team }}
"""


@pytest.fixture
def engine_config(database_url, tmp_path, jobs_dir):
    return make_config(
        database_url,
        tmp_path / "instance",
        ROOKERY_JOBS_PATH=str(jobs_dir),
        ROOKERY_CONFIG_REPO=str(tmp_path / "configs"),
        ROOKERY_DEFAULT_RETRIES=0,
        ROOKERY_SSH_CONNECT_TIMEOUT=3,
        ROOKERY_CONNECT_RETRIES=0,
    )


@pytest.fixture
def lab(ctx, device_lab_factory):
    fleet = default_fleet(3, ["cisco_ios", "arista_eos", "cisco_ios"])
    lab = device_lab_factory(fleet)
    load_lab_devices(lab.devices, lab)
    return lab


def backed_up(app) -> None:
    job = jobs.create_job(name="nightly", job_type="config_backup", target_tags=["lab"], actor="t")
    run = runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    assert reload(run.id).status == "COMPLETED_SUCCESS"


def draft(api: Api, **overrides) -> dict:
    body = {
        "name": "NTP and loopback descriptions",
        "targets": {"tags": ["lab"]},
        "template": TEMPLATE,
        "variables": {"ntp": "192.0.2.123", "team": "netops"},
        "checks": [{"command": "show ntp associations", "expect": "192\\.0\\.2\\.123"}],
        "canary": 1,
        "wave_size": 2,
        **overrides,
    }
    return ok(api.post("/api/v1/changes", body, as_="operator"), 201)


def test_preview_shows_each_devices_commands_and_what_really_changes(app, ctx, client, lab):
    backed_up(app)
    ios = lab.devices[0].name
    api = Api(client=client, tokens=make_tokens(app))
    change = draft(api)
    assert change["status"] == "draft" and change["version"] == 1
    assert [d["name"] for d in change["targets"]["devices"]] == []
    preview = ok(api.post(f"/api/v1/changes/{change['id']}/preview", as_="operator"))
    assert preview["devices"] == 3 and preview["problems"] == 0
    by_name = {item["device"]["name"]: item for item in preview["items"]}
    item = by_name[ios]
    assert item["commands"] == (
        f"ntp server 192.0.2.123\ninterface Loopback0\n description {ios} managed by netops"
    )
    # Loopback0 exists with an ip address: only the description is new under it.
    assert item["effective"] == (
        f"ntp server 192.0.2.123\ninterface Loopback0\n description {ios} managed by netops"
    )
    assert f"+ description {ios} managed by netops" in item["diff"]
    assert "+ ntp server 192.0.2.123" in item["diff"]
    assert item["commit"] and item["problem"] is None
    # a command the device already has changes nothing
    lab.set_config(ios, lab.config_of(ios).replace("!\nend", "ntp server 192.0.2.123\n!\nend"))
    backed_up_again = runs.start_run(
        db.session.scalar(select(Job).where(Job.name == "nightly")), triggered_by="test"
    )
    drain(app, concurrency=2)
    assert reload(backed_up_again.id).status == "COMPLETED_SUCCESS"
    again = ok(api.post(f"/api/v1/changes/{change['id']}/preview", as_="operator"))
    effective = {i["device"]["name"]: i["effective"] for i in again["items"]}[ios]
    assert "ntp server" not in effective and "description" in effective


def test_a_second_person_approves_and_an_edit_withdraws_the_approval(app, ctx, client, lab):
    api = Api(client=client, tokens=make_tokens(app))
    change = draft(api)
    path = f"/api/v1/changes/{change['id']}"
    # approving a draft: not submitted yet
    assert error(api.post(f"{path}/approve", {}, as_="admin"), 409)
    submitted = ok(api.post(f"{path}/submit", as_="operator"))
    assert submitted["status"] == "awaiting_approval"
    own = error(api.post(f"{path}/approve", {}, as_="operator"), 403)
    assert "another operator or an admin" in own["message"]
    assert error(api.post(f"{path}/approve", {}, as_="viewer"), 403)
    assert error(api.post(f"{path}/reject", {}, as_="admin"), 422)["fields"]["note"]
    approved = ok(api.post(f"{path}/approve", {"note": "looks right"}, as_="admin"))
    assert approved["status"] == "approved" and approved["reviewed_by"] == "admin"
    # a description edit keeps the approval; a template edit withdraws it
    same = ok(api.patch(path, {"description": "typo fixed"}, as_="operator"))
    assert same["status"] == "approved" and same["version"] == 1
    edited = ok(api.patch(path, {"variables": {"ntp": "192.0.2.124", "team": "x"}}, as_="operator"))
    assert edited["status"] == "draft" and edited["version"] == 2
    assert edited["reviewed_by"] is None
    ok(api.post(f"{path}/submit", as_="operator"))
    rejected = ok(api.post(f"{path}/reject", {"note": "wrong server"}, as_="admin"))
    assert rejected["status"] == "rejected" and rejected["review_note"] == "wrong server"
    actions = list(
        db.session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.object_type == "change")
            .order_by(AuditEntry.id)
        )
    )
    assert actions == [
        "change.create",
        "change.submit",
        "change.approve",
        "change.update",
        "change.update",
        "change.submit",
        "change.reject",
    ]


def test_self_approval_only_when_the_setting_allows_it(app, ctx, client, lab):
    app.config["ROOKERY_CHANGE_SELF_APPROVAL"] = True
    api = Api(client=client, tokens=make_tokens(app))
    change = draft(api)
    ok(api.post(f"/api/v1/changes/{change['id']}/submit", as_="operator"))
    approved = ok(api.post(f"/api/v1/changes/{change['id']}/approve", {}, as_="operator"))
    assert approved["status"] == "approved" and approved["reviewed_by"] == "operator"


def test_bad_changes_are_refused_with_a_clear_message_and_nothing_saved(app, ctx, client, lab):
    api = Api(client=client, tokens=make_tokens(app))
    cases = [
        ({"targets": {"tags": ["nope"]}}, "targets", "No tag named 'nope'"),
        ({"targets": {"tags": []}}, "targets", "no enabled device"),
        ({"template": "ntp server {{ ntp"}, "template", "line 1"),
        ({"checks": [{"command": "show run", "expect": "("}]}, "checks", "regular expression"),
        ({"checks": [{"command": "reload", "expect": "x"}]}, "checks", "reload"),
        ({"variables": {"device": 1}}, "variables", "device"),
        ({"targets": {"devices": ["ghost"]}}, "targets", "ghost"),
    ]
    for overrides, field, words in cases:
        answer = error(api.post("/api/v1/changes", {**_body(), **overrides}, as_="operator"), 422)
        assert words.lower() in answer["fields"][field].lower(), (overrides, answer)
    assert db.session.scalar(select(Change.id)) is None
    # a variable the template needs but nobody gave: the draft saves, submitting does not
    change = ok(api.post("/api/v1/changes", {**_body(), "variables": {}}, as_="operator"), 201)
    preview = ok(api.post(f"/api/v1/changes/{change['id']}/preview", as_="operator"))
    assert preview["problems"] == 3
    assert "'ntp' is undefined" in preview["items"][0]["problem"]
    refused = error(api.post(f"/api/v1/changes/{change['id']}/submit", as_="operator"), 422)
    assert "does not render for 3 device(s)" in refused["message"]
    assert changes.get_change(change["id"]).status == "draft"
    assert error(api.post("/api/v1/changes", {**_body()}, as_="viewer"), 403)
    assert error(api.post("/api/v1/changes", _body(), as_="operator"), 409)


def _body() -> dict:
    return {
        "name": "n",
        "targets": {"tags": ["lab"]},
        "template": TEMPLATE,
        "variables": {"ntp": "192.0.2.1", "team": "t"},
    }


def test_the_pages_list_preview_and_review_a_change(app, ctx, client, auth, lab):
    backed_up(app)
    api = Api(client=client, tokens=make_tokens(app))
    change = draft(api)
    auth.create("rita", "reviewer-pw-1", "operator")
    auth.login("rita", "reviewer-pw-1")
    listed = client.get("/changes").get_data(as_text=True)
    assert f'id="change-{change["id"]}"' in listed and "NTP and loopback" in listed
    page = client.get(f"/changes/{change['id']}").get_data(as_text=True)
    assert 'id="submit-change"' in page and "3 devices (tags lab)" in page
    token = csrf_token(client, f"/changes/{change['id']}")
    fragment = client.get(f"/changes/{change['id']}/preview").get_data(as_text=True)
    assert fragment.count('<tr id="preview-') == 3
    assert '<span class="diff-add">+ ntp server 192.0.2.123</span>' in fragment
    # rita did not write it: she may approve it once it is submitted
    refused = client.post(
        f"/changes/{change['id']}/approve", data={"csrf_token": token}, follow_redirects=True
    )
    assert "only a submitted change is reviewed" in refused.get_data(as_text=True)
    ok(api.post(f"/api/v1/changes/{change['id']}/submit", as_="operator"))
    approved = client.post(
        f"/changes/{change['id']}/approve", data={"csrf_token": token}, follow_redirects=True
    ).get_data(as_text=True)
    assert "approved." in approved and 'id="change-status">approved' in approved
    assert changes.get_change(change["id"]).reviewed_by == "rita"
    assert client.get("/changes/999999").status_code == 404


def test_the_cli_creates_previews_and_reviews_a_change(app, ctx, runner, lab, tmp_path):
    from app.cli import cli
    from app.services import users

    backed_up(app)
    users.create_user("olga", "operator-pw-1", "operator")
    users.create_user("rita", "reviewer-pw-1", "operator")
    spec = tmp_path / "change.yaml"
    spec.write_text(
        "name: ntp\n"
        "targets: {tags: [lab]}\n"
        "template: |\n"
        "  ntp server {{ ntp }}\n"
        "variables: {ntp: 192.0.2.123}\n"
        "checks: [{command: show ntp associations, expect: '192\\.0\\.2\\.123'}]\n"
    )

    def rookery(*args: str):
        return runner.invoke(cli, ["change", *args])

    created = rookery("create", str(spec), "--as", "olga")
    assert created.exit_code == 0, created.output
    assert "drafted" in created.output
    listed = rookery("list")
    assert listed.output.splitlines()[1].split()[:4] == ["1", "ntp", "draft", "1"]
    preview = rookery("preview", "ntp")
    assert preview.exit_code == 0 and preview.output.count("+ ntp server 192.0.2.123") == 3
    assert rookery("submit", "1", "--as", "olga").exit_code == 0
    own = rookery("approve", "ntp", "--as", "olga")
    assert own.exit_code == 1 and own.output.startswith("Error: olga wrote change ntp")
    approved = rookery("approve", "ntp", "--as", "rita", "--note", "ok")
    assert approved.exit_code == 0 and "approved by rita" in approved.output
    shown = rookery("show", "ntp", "--json")
    assert '"status": "approved"' in shown.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntargets: {tags: [lab]}\ntemplate: 'ntp {{ oops'\nfrob: 1\n")
    refused = rookery("create", str(bad), "--as", "olga")
    assert refused.exit_code == 1 and "Unknown field(s)" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    nobody = rookery("submit", "ntp", "--as", "ghost")
    assert nobody.exit_code == 1 and "ghost" in nobody.output
    # --live: a run fetches the running configs; with no worker it says so
    alone = rookery("preview", "ntp", "--live", "rita", "--wait", "1")
    assert alone.exit_code == 1 and "is a worker running?" in alone.output, alone.output
    done = threading.Event()

    def work() -> None:  # a worker, until the CLI has its answer
        while not done.is_set():
            drain(app)
            done.wait(0.2)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        live = rookery("preview", "ntp", "--live", "rita", "--wait", "60")
    finally:
        done.set()
        worker.join()
    assert live.exit_code == 0, live.output
    assert live.output.count("+ ntp server 192.0.2.123") == 3
