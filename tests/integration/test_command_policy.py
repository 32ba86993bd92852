"""The command policy of run_commands against emulated devices (FakeNOS on 127.0.0.1).

One command is one line at the device: a line break inside it is refused when the job is
saved and again by the worker. Operators run read-only commands only; anything else
needs a job an admin saved. Output is stored with secrets removed, for every role.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.cli import cli
from app.demo_lab import default_fleet
from app.extensions import db
from app.models import AuditEntry, DeviceResult, Job
from app.services import inventory, jobs, runs
from tests.conftest import csrf_token
from tests.integration.helpers import drain, load_lab_devices, reload
from tests.integration.test_api_support import Api, error, make_tokens, ok
from tests.integration.test_run_commands import app, ctx, results  # noqa: F401

pytest_plugins = ["tests.devices"]

SECRETS = ("$1$mERr$hx5rVt7rPNoS4wqbXKX7m0", "$9$nhEmQ1AF", "s3cr3t-community", "0822455D0A16")
RUNNING_CONFIG = (
    "hostname r1\n"
    f"enable secret 5 {SECRETS[0]}\n"
    f"username netops privilege 15 secret 9 {SECRETS[1]}\n"
    f"snmp-server community {SECRETS[2]} RO\n"
    f"tacacs-server key 7 {SECRETS[3]}\n"
    "interface Ethernet0/0\n"
)


@pytest.fixture
def api(app, client) -> Api:  # noqa: F811
    return Api(client=client, tokens=make_tokens(app))


def job_body(commands, name="cmds"):
    return {"name": name, "job_type": "run_commands", "params": {"commands": commands}}


def test_api_refuses_a_line_break_inside_one_command(api, app):  # noqa: F811
    for role in ("operator", "admin"):
        body = job_body(["show version\nconfigure terminal", "show clock"])
        found = error(api.post("/api/v1/jobs", json=body, as_=role), 422)
        assert "line break" in found["fields"]["commands"], found
    with app.app_context():
        assert db.session.query(Job).count() == 0


def test_operator_refused_configure_terminal_admin_may(api, app):  # noqa: F811
    refused = error(
        api.post("/api/v1/jobs", json=job_body(["configure terminal"]), as_="operator"), 403
    )
    assert "'configure terminal'" in refused["message"]
    assert "read-only" in refused["fields"]["commands"]

    job = ok(api.post("/api/v1/jobs", json=job_body(["configure terminal"]), as_="admin"), 201)
    assert job["params"]["_approved_by"] == "admin"
    changed = api.patch(f"/api/v1/jobs/{job['id']}", json={"description": "x"}, as_="operator")
    assert error(changed, 403)["fields"]["commands"].startswith("'configure terminal'")
    started = api.post(f"/api/v1/jobs/{job['id']}/runs", json={}, as_="operator")
    assert "'configure terminal'" in error(started, 403)["message"]
    now = api.post(f"/api/v1/jobs/{job['id']}/runs", json={"now": True}, as_="operator")
    error(now, 403)
    ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}, as_="admin"), 201)
    # An operator cannot forge the approval: it is not a parameter anyone gives.
    forged = job_body(["configure terminal"], name="forged")
    forged["params"]["_approved_by"] = "admin"
    error(api.post("/api/v1/jobs", json=forged, as_="operator"), 403)
    drain(app)


def test_operator_may_save_and_start_read_only_commands(api, app):  # noqa: F811
    body = job_body(["sh version", "show interfaces | include up, down", "ping 127.0.0.1"])
    job = ok(api.post("/api/v1/jobs", json=body, as_="operator"), 201)
    assert "_approved_by" not in job["params"]
    ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}, as_="operator"), 201)
    drain(app)


def test_job_form_and_cli_refuse_as_well(app, client, auth):  # noqa: F811
    with app.app_context():  # the form saves device jobs with known targets only
        inventory.create_device(
            name="r1", host="192.0.2.1", platform="cisco_ios", tags=["lab"], actor="t"
        )
    auth.create("olga", "operator-pw-1", "operator")
    auth.login("olga", "operator-pw-1")
    token = csrf_token(client, "/jobs/new?job_type=run_commands")
    form = {
        "csrf_token": token,
        "job_type": "run_commands",
        "name": "conf",
        "p_commands": "show version\r\nconfigure terminal\r\n",
        "target_tags": "lab",
        "p_textfsm": ["0"],
        "priority": "normal",
        "schedule_kind": "none",
        "timezone": "UTC",
        "enabled": ["0", "1"],
    }
    page = client.post("/jobs/new", data=form)
    assert page.status_code == 403
    assert "is not a read-only command" in page.get_data(as_text=True)
    # The textarea's lines are its commands; a control character inside one is refused.
    page = client.post("/jobs/new", data={**form, "p_commands": "show version\x15reload"})
    assert page.status_code == 422
    assert "control character" in page.get_data(as_text=True)

    result = app.test_cli_runner().invoke(
        cli,
        [
            "job",
            "create",
            "x",
            "--type",
            "run_commands",
            "--param",
            "commands=show version\nreload",
            "--param",
            "commands=show clock",
        ],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "line break" in result.output


def _bypassing_the_service(commands) -> Job:
    """A job whose commands were written without the policy (an old row, a bad path)."""
    job = jobs.create_job(
        name="raw",
        job_type="run_commands",
        target_tags=["lab"],
        params={"commands": ["show clock"]},
    )
    job.params = {"commands": commands, "textfsm": False}
    db.session.commit()
    return job


def test_worker_sends_no_line_break_and_no_unapproved_command(app, ctx, device_lab_factory):  # noqa: F811
    (ios,) = default_fleet(1, ["cisco_ios"])
    lab = device_lab_factory([ios])
    load_lab_devices(lab.devices, lab)

    for commands, says in (
        (["show clock", "show version\nconfigure terminal"], "line break"),
        (["show clock", "configure terminal"], "not a read-only command on cisco_ios"),
    ):
        job = _bypassing_the_service(commands)
        run = runs.start_run(job, triggered_by="test")
        drain(app)
        result = results(reload(run.id).id)[ios.name]
        assert result.status == "failed"
        assert says in result.message, result.message
        assert not result.output  # nothing was sent, not even the allowed show clock
        jobs.delete_job(job.id)


def test_an_admin_saved_job_sends_its_commands(app, ctx, device_lab_factory):  # noqa: F811
    (ios,) = default_fleet(1, ["cisco_ios"])
    ios.commands["terminal monitor"] = "% Console already monitors"
    lab = device_lab_factory([ios])
    load_lab_devices(lab.devices, lab)
    job = jobs.create_job(
        name="admin",
        job_type="run_commands",
        target_tags=["lab"],
        params={"commands": ["terminal monitor"]},
        actor="admin-cli",
    )
    assert job.params["_approved_by"] == "admin-cli"
    run = runs.start_run(job, triggered_by="test")
    drain(app)
    result = results(run.id)[ios.name]
    assert f"{ios.name}# terminal monitor" in (result.output or ""), result.message


def test_stored_output_is_redacted(app, ctx, device_lab_factory):  # noqa: F811
    (ios,) = default_fleet(1, ["cisco_ios"])
    ios.commands["show running-config"] = RUNNING_CONFIG
    lab = device_lab_factory([ios])
    load_lab_devices(lab.devices, lab)
    job = jobs.create_job(
        name="run",
        job_type="run_commands",
        target_tags=["lab"],
        params={"commands": ["show running-config"], "textfsm": True},
        actor="test",
    )
    run = runs.start_run(job, triggered_by="test")
    drain(app)
    result = results(run.id)[ios.name]
    assert result.status == "success", result.message
    stored = f"{result.output} {result.data}"
    for secret in SECRETS:
        assert secret not in stored
    assert "enable secret 5 <removed>" in result.output
    assert "snmp-server community <removed> RO" in result.output
    assert "tacacs-server key 7 <removed>" in result.output
    assert db.session.scalar(select(Job.id).where(Job.name == "run")) == job.id


# ------------------------------------------------------------------ admins' rules


def test_admins_edit_the_policy_and_operators_follow_it(api, app, device_lab_factory):  # noqa: F811
    (ios,) = default_fleet(1, ["cisco_ios"])
    ios.commands["clear counters"] = 'Clear "show interface" counters on all interfaces'
    lab = device_lab_factory([ios])
    with app.app_context():
        load_lab_devices(lab.devices, lab)

    rule = {"kind": "allow", "words": "Clear  Counters", "note": "NOC runbook 4"}
    error(api.post("/api/v1/command-policy/rules", json=rule, as_="operator"), 403)
    error(api.post("/api/v1/jobs", json=job_body(["clear counters"]), as_="operator"), 403)
    allow = ok(api.post("/api/v1/command-policy/rules", json=rule, as_="admin"), 201)
    assert allow["words"] == "clear counters" and allow["created_by"] == "admin"
    error(api.post("/api/v1/command-policy/rules", json=rule, as_="admin"), 409)
    bad = api.post("/api/v1/command-policy/rules", json={"kind": "allow", "words": "x | y"})
    assert "not words" in error(bad, 422)["fields"]["words"]
    deny = {"kind": "deny", "words": "show running-config", "platform": "cisco_ios"}
    ok(api.post("/api/v1/command-policy/rules", json=deny, as_="admin"), 201)
    policy = ok(api.get("/api/v1/command-policy", as_="viewer"))
    assert [(r["kind"], r["words"], r["platform"]) for r in policy["rules"]] == [
        ("allow", "clear counters", None),
        ("deny", "show running-config", "cisco_ios"),
    ]
    assert any(p["platform"] == "cisco_ios" and "show" in p["verbs"] for p in policy["builtin"])

    # The operator may now save and run clear counters, and the worker sends it.
    body = {**job_body(["clear counters"]), "targets": {"tags": ["lab"]}}
    job = ok(api.post("/api/v1/jobs", json=body, as_="operator"), 201)
    assert "_approved_by" not in job["params"]
    ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}, as_="operator"), 201)
    drain(app)
    with app.app_context():
        sent = db.session.scalars(select(DeviceResult).where(DeviceResult.device_name == ios.name))
        assert any("Clear" in (r.output or "") for r in sent), [r.message for r in sent]

    # A deny catches abbreviations, on the platform it names, at the worker as well.
    with app.app_context():
        raw = _bypassing_the_service(["sh run"])
        run_id = runs.start_run(raw, triggered_by="test").id
    drain(app)
    with app.app_context():
        refused = results(run_id)[ios.name]
        assert "denied by the admins' rule 'show running-config' on cisco_ios" in refused.message
        assert not refused.output

    # Removing the allow rule takes it back: the saved job no longer starts for operators,
    # and the worker refuses it even when an admin starts it.
    ok(api.delete(f"/api/v1/command-policy/rules/{allow['id']}", as_="admin"), 204)
    error(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}, as_="operator"), 403)
    started = ok(api.post(f"/api/v1/jobs/{job['id']}/runs", json={}, as_="admin"), 201)
    drain(app)
    with app.app_context():
        result = results(started["id"])[ios.name]
        assert "not a read-only command" in result.message and not result.output
        trail = db.session.scalars(
            select(AuditEntry.action).where(AuditEntry.object_type == "command_rule")
        ).all()
        assert sorted(trail) == ["create", "create", "delete"]


def test_the_policy_page_shows_the_list_and_admins_edit_it(app, client, auth):  # noqa: F811
    auth.create("vera", "viewer-pw-1", "viewer")
    auth.login("vera", "viewer-pw-1")
    page = client.get("/command-policy").get_data(as_text=True)
    assert 'id="builtin-policy"' in page and 'id="no-rules"' in page
    assert 'id="rule-form"' not in page
    auth.logout()
    auth.create("ada", "admin-pw-12", "admin")
    auth.login("ada", "admin-pw-12")
    token = csrf_token(client, "/command-policy")
    bad = client.post(
        "/command-policy/rules", data={"csrf_token": token, "kind": "allow", "words": ""}
    )
    assert bad.status_code == 422 and 'id="error-words"' in bad.get_data(as_text=True)
    added = client.post(
        "/command-policy/rules",
        data={"csrf_token": token, "kind": "deny", "words": "show tech-support", "platform": ""},
        follow_redirects=True,
    )
    assert added.status_code == 200 and "Rule added: deny" in added.get_data(as_text=True)
    assert "every platform" in client.get("/command-policy").get_data(as_text=True)
