"""Change sets applied: a real run of the change_apply job through the runner, on the
stateful cisco_ios emulator (127.0.0.1), with a real git config store: the canary and
waves, post-checks that fail on one device, the failure budget rolling back every
changed device, a rollback that itself fails, and the refusals that send nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import git
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import (
    AuditEntry,
    Change,
    ChangeDevice,
    ComplianceResult,
    DeviceResult,
    Event,
    JobLog,
)
from app.services import changes, compliance, jobs, runs
from tests.conftest import make_config
from tests.integration.change_lab import BGP_UP, TEMPLATE
from tests.integration.helpers import drain, reload
from tests.integration.test_api_support import Api, error, make_tokens, ok
from tests.integration.test_webhooks import Receiver

pytest_plugins = ["tests.integration.change_fixtures"]

FLEET = 20
#: a post-check only: before the push the line is not there yet
NTP_TOOK = {
    "command": "show running-config | include ntp server",
    "expect": r"ntp server 192\.0\.2\.123",
    "when": "after",
}


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
        ROOKERY_WORKER_CONCURRENCY=4,
        ROOKERY_WEBHOOK_ALLOW="127.0.0.1/32",
    )


def approved(api: Api, **overrides) -> dict:
    body = {
        "name": "NTP and loopbacks",
        "targets": {"tags": ["lab"]},
        "template": TEMPLATE,
        "variables": {"note": "managed"},
        "checks": [BGP_UP, NTP_TOOK],
        "canary": 2,
        "wave_size": 6,
        "max_failed": 3,
        **overrides,
    }
    change = ok(api.post("/api/v1/changes", body, as_="operator"), 201)
    ok(api.post(f"/api/v1/changes/{change['id']}/submit", {}, as_="operator"))
    ok(api.post(f"/api/v1/changes/{change['id']}/approve", {}, as_="admin"))
    return change


def apply(app, api: Api, change: dict) -> dict:
    started = ok(api.post(f"/api/v1/changes/{change['id']}/apply", {}, as_="operator"), 201)
    drain(app, concurrency=2)
    assert reload(started["run_id"]).status in (
        "COMPLETED_SUCCESS",
        "COMPLETED_PARTIAL_FAILURE",
        "COMPLETED_FAILURE",
    )
    return ok(api.get(f"/api/v1/changes/{change['id']}", as_="viewer"))


def states(shown: dict) -> dict[str, str]:
    return {d["device"]["name"]: d["state"] for d in shown["devices"]}


def test_a_canary_and_three_waves_apply_the_change_to_twenty_devices(app, ctx, client, lab):
    api = Api(client=client, tokens=make_tokens(app))
    originals = {d.name: lab.config_of(d.name) for d in lab.devices}
    compliance.create_rule(actor="t", name="NTP", required="ntp server 192.0.2.123")
    change = approved(api)
    shown = apply(app, api, change)

    assert shown["status"] == "applied"
    assert set(states(shown).values()) == {"applied"}
    waves = {}
    for device in shown["devices"]:
        waves.setdefault(device["wave"], []).append(device["device"]["name"])
    assert sorted((w, len(n)) for w, n in waves.items()) == [(0, 2), (1, 6), (2, 6), (3, 6)]
    for name in originals:
        config = lab.config_of(name)
        assert "ntp server 192.0.2.123" in config
        assert f" description {name} managed" in config
    # the runner ran them wave after wave: the canary's devices ended before wave 1 began
    results = {
        r.device_name: r
        for r in db.session.scalars(
            select(DeviceResult).where(DeviceResult.run_id == shown["run_id"])
        )
    }
    for wave in (1, 2, 3):
        before = max(results[n].finished_at for n in waves[wave - 1])
        assert all(results[n].started_at > before for n in waves[wave])
    by_name = {d["device"]["name"]: d for d in shown["devices"]}
    lines = [
        line.message
        for line in db.session.scalars(
            select(JobLog).where(JobLog.run_id == shown["run_id"]).order_by(JobLog.id)
        )
    ]
    assert [m for m in lines if m.endswith("device(s)") and m.startswith(("Canary", "Wave"))] == [
        "Canary: 2 device(s)",
        "Wave 1: 6 device(s)",
        "Wave 2: 6 device(s)",
        "Wave 3: 6 device(s)",
    ]
    # before and after are commits of the config store holding those configs
    repo = git.Repo(app.config["ROOKERY_CONFIG_REPO"])
    one = by_name["ios-005"]
    before = repo.commit(one["before_commit"]).tree["ios-005.cfg"].data_stream.read().decode()
    after = repo.commit(one["after_commit"]).tree["ios-005.cfg"].data_stream.read().decode()
    assert "ntp server 192.0.2.123" not in before
    assert "ntp server 192.0.2.123" in after
    assert "change #" in repo.commit(one["after_commit"]).message
    # the configs the change committed are checked at once (a later backup finds them
    # unchanged and would not)
    result = db.session.scalar(
        select(ComplianceResult).where(ComplianceResult.device_id == one["device"]["id"])
    )
    assert result.compliant and result.commit == one["after_commit"]


def test_a_failing_post_check_rolls_that_device_back_and_the_others_go_on(app, ctx, client, lab):
    api = Api(client=client, tokens=make_tokens(app))
    original = lab.config_of("ios-004")
    change = approved(
        api,
        template=TEMPLATE.replace("{{ note }}", "{{ notes[device.name] | default('ok') }}"),
        variables={"notes": {"ios-004": "BREAKS-BGP"}},
    )
    shown = apply(app, api, change)

    found = states(shown)
    assert found.pop("ios-004") == "rolled_back"
    assert set(found.values()) == {"applied"}
    assert shown["status"] == "partially_applied"
    assert lab.config_of("ios-004") == original  # configure replace put it back exactly
    failed = next(d for d in shown["devices"] if d["device"]["name"] == "ios-004")
    assert failed["rollback_method"] == "native"
    assert "Post-check failed" in failed["message"]


def test_a_spent_failure_budget_rolls_back_every_changed_device(app, ctx, client, lab):
    api = Api(client=client, tokens=make_tokens(app))
    originals = {d.name: lab.config_of(d.name) for d in lab.devices}
    # ios-004 is in wave 1 (the canary is ios-001 and ios-002)
    change = approved(
        api,
        template=TEMPLATE.replace("{{ note }}", "{{ notes[device.name] | default('ok') }}"),
        variables={"notes": {"ios-004": "BREAKS-BGP"}},
        max_failed=1,
        rollback="all",
    )
    shown = apply(app, api, change)

    found = states(shown)
    wave_of = {d["device"]["name"]: d["wave"] for d in shown["devices"]}
    assert shown["status"] == "rolled_back"
    for name, state in found.items():
        if wave_of[name] <= 1:
            assert state == "rolled_back", name
        else:
            assert state == "not_attempted", name
        assert lab.config_of(name) == originals[name], name  # every device as it was
    assert not any("ntp server 192.0.2.123" in c for c in map(lab.config_of, originals))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 (allowed by ROOKERY_WEBHOOK_ALLOW here)."""
    server = Receiver().start()
    yield server
    server.stop()


def test_a_rollback_that_fails_is_reported_loudly(app, ctx, client, lab, receiver):
    api = Api(client=client, tokens=make_tokens(app))
    lab.break_rollback("ios-001")
    lab.fail_command("ios-001", r"^no ntp server", where="config")  # line by line fails too
    change = approved(
        api,
        template=TEMPLATE.replace("{{ note }}", "BREAKS-BGP"),
        targets={"devices": ["ios-001"]},
        canary=1,
    )
    # the change's job exists once it was submitted: a webhook can hear of its rollouts
    job_id = ok(api.get(f"/api/v1/changes/{change['id']}", as_="viewer"))["job_id"]
    hook = {"url": receiver.url, "events": ["rollback_failed"]}
    ok(api.post(f"/api/v1/jobs/{job_id}/webhooks", hook, as_="operator"), 201)
    shown = apply(app, api, change)

    result = db.session.scalar(select(DeviceResult).where(DeviceResult.run_id == shown["run_id"]))
    assert states(shown) == {"ios-001": "rollback_failed"}, result.message
    assert shown["status"] == "failed"
    assert "ROLLBACK FAILED" in shown["devices"][0]["message"]
    critical = db.session.scalars(
        select(JobLog).where(JobLog.run_id == shown["run_id"], JobLog.level == "critical")
    ).all()
    assert any("ROLLBACK FAILED" in line.message for line in critical)
    run = reload(shown["run_id"])
    assert run.result["rollback_failed"] == ["ios-001"]
    (event,) = db.session.scalars(
        select(Event).where(Event.run_id == run.id, Event.type == "change.rollback_failed")
    )
    assert event.data["device"] == "ios-001"
    drain(app)  # the delivery, queued with the run's end
    (told,) = receiver.received
    assert told.headers["X-Rookery-Event"] == "rollback_failed"
    assert told.payload["rollback_failed"] == ["ios-001"]
    assert told.payload["run"]["id"] == run.id


def test_nothing_is_sent_without_approval_twice_at_once_or_from_a_hand_made_job(
    app, ctx, client, lab
):
    api = Api(client=client, tokens=make_tokens(app))
    draft = ok(
        api.post(
            "/api/v1/changes",
            {"name": "unreviewed", "targets": {"tags": ["lab"]}, "template": TEMPLATE},
            as_="operator",
        ),
        201,
    )
    refused = api.post(f"/api/v1/changes/{draft['id']}/apply", {}, as_="operator")
    assert refused.status_code == 409
    assert "only an approved change is applied" in error(refused, 409)["message"]
    viewer = api.post(f"/api/v1/changes/{draft['id']}/apply", {}, as_="viewer")
    assert viewer.status_code == 403

    change = approved(api)
    first = ok(api.post(f"/api/v1/changes/{change['id']}/apply", {}, as_="operator"), 201)
    again = api.post(f"/api/v1/changes/{change['id']}/apply", {}, as_="operator")
    assert again.status_code == 409
    assert f"run #{first['run_id']}" in error(again, 409)["message"]
    edit = api.patch(f"/api/v1/changes/{change['id']}", {"canary": 3}, as_="operator")
    assert edit.status_code == 409
    assert db.session.scalar(select(ChangeDevice.state).limit(1)) == "pending"

    with pytest.raises(Exception, match="made by Rookery itself"):
        jobs.create_job(
            name="sneaky", job_type="change_apply", params={"change_id": change["id"]}, actor="x"
        )
    for device in lab.devices:  # nothing reached any device
        assert not [c for c in lab.commands_of(device.name) if c.startswith("ntp server")]
    assert changes.get_change(draft["id"]).run_id is None
    runs.cancel_run(first["run_id"], actor="test")  # cancelled before it started
    shown = ok(api.get(f"/api/v1/changes/{change['id']}", as_="viewer"))
    assert shown["status"] == "cancelled"
    assert set(states(shown).values()) == {"not_attempted"}


def test_a_change_that_locks_rookery_out_fails_its_reachability_check_and_is_rolled_back(
    app, ctx, client, lab
):
    """AAA sent to a TACACS+ group with no local fallback: the open session still works,
    a new login does not. With ``reachability`` the device is put back at once."""
    api = Api(client=client, tokens=make_tokens(app))
    original = lab.config_of("ios-002")
    change = approved(
        api,
        template="aaa new-model\naaa authentication login default group tacacs+\n",
        checks=[],
        targets={"devices": ["ios-002"]},
        reachability=True,
    )
    shown = apply(app, api, change)

    (device,) = shown["devices"]
    assert device["state"] == "rolled_back", device
    assert "a new login failed" in device["message"]
    assert lab.config_of("ios-002") == original  # and so new logins work again
    assert not [r for r in device["checks"]["postchecks"] if r["passed"]]


def test_a_live_preview_reads_the_running_configs_and_changes_nothing(app, ctx, client, auth, lab):
    """No backup yet: the backup preview has nothing to start from; the live one fetches
    each running config in a run and predicts on it. Only the show command is sent. A
    device that answers it with an error has no prediction, but the reason."""
    api = Api(client=client, tokens=make_tokens(app))
    originals = {name: lab.config_of(name) for name in ("ios-001", "ios-002")}
    lab.fail_command("ios-003", r"^show running-config", where="exec")
    change = approved(api, targets={"devices": ["ios-001", "ios-002", "ios-003"]})
    from_backups = ok(api.post(f"/api/v1/changes/{change['id']}/preview", as_="operator"))
    assert all(i["effective"] is None for i in from_backups["items"])  # no backup yet
    assert error(api.post(f"/api/v1/changes/{change['id']}/preview/live", as_="viewer"), 403)

    started = ok(api.post(f"/api/v1/changes/{change['id']}/preview/live", as_="operator"), 201)
    drain(app, concurrency=2)
    live = ok(api.get(f"/api/v1/changes/{change['id']}/preview/live", as_="viewer"))
    assert live["run_id"] == started["run_id"] and live["final"]
    assert [i["device"]["name"] for i in live["items"]] == ["ios-001", "ios-002", "ios-003"]
    *predicted, refused = live["items"]
    assert refused["effective"] is None and refused["diff"] is None
    assert "refused the configuration command" in refused["problem"]
    for item in predicted:
        assert "+ ntp server 192.0.2.123" in item["diff"], item
        assert "ntp server 192.0.2.123" in item["effective"]
    for name, config in originals.items():
        assert lab.config_of(name) == config  # read only
        assert not [c for c in lab.commands_of(name) if c.startswith(("ntp", "conf"))]
    auth.create("vera", "viewer-pw-123", "viewer")
    auth.login("vera", "viewer-pw-123")
    page = client.get(f"/changes/{change['id']}/preview/live").get_data(as_text=True)
    assert 'id="live-table"' in page and "hx-trigger" not in page  # done: no more polling


def test_secret_variables_reach_the_device_and_nobody_else(app, ctx, client, lab):
    """An SNMP community as a secret variable: sent to the device, but encrypted at rest
    and shown as *** in the change, its previews, the rollout's commands and messages,
    the run's results and its log, even when the device refuses the line holding it."""
    api = Api(client=client, tokens=make_tokens(app))
    secret = "S3cr3t-Community-77"
    lab.fail_command("ios-002", r"^snmp-server community")
    change = approved(
        api,
        template="snmp-server community {{ community }} RO\nntp server 192.0.2.123\n",
        variables={"community": secret, "note": "x"},
        secret_variables=["community"],
        checks=[],
        targets={"devices": ["ios-001", "ios-002"]},
        max_failed=2,
    )
    assert change["variables"] == {"community": "***", "note": "x"}
    stored = db.session.get(Change, change["id"])
    assert secret not in json.dumps(stored.variables)  # sealed with the instance key
    preview = ok(api.post(f"/api/v1/changes/{change['id']}/preview/live", as_="operator"), 201)
    shown = apply(app, api, change)  # drains the live preview's run too

    states_ = states(shown)
    assert states_ == {"ios-001": "applied", "ios-002": "rolled_back"}, shown["devices"]
    assert f"snmp-server community {secret} RO" in lab.config_of("ios-001")  # it got there
    refused = next(d for d in shown["devices"] if d["device"]["name"] == "ios-002")
    assert "refused 'snmp-server community *** RO'" in refused["message"]
    live = ok(api.get(f"/api/v1/changes/{change['id']}/preview/live", as_="viewer"))
    assert live["run_id"] == preview["run_id"] and "***" in live["items"][0]["commands"]
    everything = json.dumps(
        [
            shown,
            live,
            ok(api.post(f"/api/v1/changes/{change['id']}/preview", as_="operator")),
            [r.message for r in db.session.scalars(select(JobLog))],
            [(r.message, r.data) for r in db.session.scalars(select(DeviceResult))],
            [(c.commands, c.message, c.details) for c in db.session.scalars(select(ChangeDevice))],
            [(a.summary, a.before, a.after) for a in db.session.scalars(select(AuditEntry))],
        ]
    )
    assert secret not in everything
    # an edit that gives the secret back as shown keeps it
    ok(
        api.patch(
            f"/api/v1/changes/{change['id']}",
            {"variables": {"community": "***", "note": "y"}},
            as_="operator",
        )
    )
    db.session.expire_all()
    assert changes.secret_values(changes.get_change(change["id"])) == [secret]
