"""Compliance on every backup: rules checked on FakeNOS configs backed up into a real git
store, results and remediation per device, history across backups, re-checks after a
rule edit, Python rule modules, webhooks, and the API's answers to bad input."""

from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import select

from app.demo_lab import default_fleet
from app.extensions import db
from app.models import ComplianceChange, ComplianceResult, ComplianceRule, Job, JobRun
from app.services import compliance, inventory, jobs, runs
from app.services import webhooks as webhook_service
from tests.conftest import make_config
from tests.integration.helpers import drain, load_lab_devices, reload
from tests.integration.test_api_support import Api, error, make_tokens, ok
from tests.integration.test_webhooks import Receiver, verify

pytest_plugins = ["tests.devices"]

NTP_IOS = {
    "name": "NTP server",
    "severity": "high",
    "platforms": ["cisco_ios", "arista_eos"],
    "required": "ntp server 192.0.2.123",
}
PORTFAST = {
    "name": "Portfast on GigabitEthernet",
    "severity": "low",
    "platforms": ["cisco_ios"],
    "required": "re:interface GigabitEthernet\\S+\n spanning-tree portfast",
}
JUNOS_SNMP = {
    "name": "No SNMP location on Junos",
    "severity": "medium",
    "platforms": ["juniper_junos"],
    "forbidden": "re:set snmp location .*",
    "required": "set system ntp server 192.0.2.123",
}


@pytest.fixture
def rules_dir(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    return folder


@pytest.fixture
def engine_config(database_url, tmp_path, jobs_dir, rules_dir):
    return make_config(
        database_url,
        tmp_path / "instance",
        ROOKERY_JOBS_PATH=str(jobs_dir),
        ROOKERY_CONFIG_REPO=str(tmp_path / "configs"),
        ROOKERY_COMPLIANCE_RULES_PATH=str(rules_dir),
        ROOKERY_DEFAULT_RETRIES=0,
        ROOKERY_SSH_CONNECT_TIMEOUT=3,
        ROOKERY_CONNECT_RETRIES=0,
        ROOKERY_WEBHOOK_ALLOW="127.0.0.1/32",
    )


@pytest.fixture
def lab(ctx, device_lab_factory):
    fleet = default_fleet(3, ["cisco_ios", "arista_eos", "juniper_junos"])
    lab = device_lab_factory(fleet)
    load_lab_devices(lab.devices, lab)
    return lab


def names(lab):
    ios, eos, junos = (d.name for d in lab.devices)
    return ios, eos, junos


def backup(app, job=None) -> JobRun:
    job = job or db.session.scalar(select(Job).where(Job.name == "nightly"))
    if job is None:
        job = jobs.create_job(
            name="nightly", job_type="config_backup", target_tags=["lab"], actor="test"
        )
    run = runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    run = reload(run.id)
    assert run.status == "COMPLETED_SUCCESS", (run.status, run.message)
    return run


def result_of(device_name: str, rule_name: str) -> ComplianceResult | None:
    db.session.expire_all()
    return db.session.scalar(
        select(ComplianceResult)
        .join(ComplianceRule, ComplianceRule.id == ComplianceResult.rule_id)
        .where(
            ComplianceResult.device_id == inventory.get_by_name(device_name).id,
            ComplianceRule.name == rule_name,
        )
    )


def test_backups_check_changed_configs_keep_history_and_rule_edits_recheck(app, ctx, lab):
    ios, eos, junos = names(lab)
    for fields in (NTP_IOS, PORTFAST, JUNOS_SNMP):
        compliance.create_rule(actor="olga", **fields)
    drain(app)  # the check runs the rules started: nothing backed up yet, nothing to check
    assert db.session.scalar(select(ComplianceResult.device_id)) is None

    first = backup(app)
    assert first.result["checks"] == 4  # ios: 2 rules, eos: 1, junos: 1
    ntp = result_of(ios, "NTP server")
    assert ntp is not None and not ntp.compliant
    assert ntp.commit == first.result["commit"]
    assert ntp.missing == ["ntp server 192.0.2.123"]
    assert ntp.remediation == "ntp server 192.0.2.123"
    portfast = result_of(ios, "Portfast on GigabitEthernet")
    assert not portfast.compliant
    assert portfast.missing == ["interface GigabitEthernet0/1\n spanning-tree portfast"]
    assert portfast.remediation == "interface GigabitEthernet0/1\n spanning-tree portfast"
    assert result_of(eos, "Portfast on GigabitEthernet") is None  # out of its scope
    eos_ntp = result_of(eos, "NTP server")
    assert not eos_ntp.compliant and eos_ntp.remediation == "ntp server 192.0.2.123"
    snmp = result_of(junos, "No SNMP location on Junos")
    assert not snmp.compliant
    assert any("set snmp location" in line for line in snmp.unexpected)
    assert "delete snmp location" in snmp.remediation
    assert "set system ntp server 192.0.2.123" in snmp.remediation
    assert first.result["compliance_changes"] == [], "a first check is history, not news"

    # Only the device whose config changed is checked again, on the new commit.
    eos_checked = eos_ntp.checked_at
    lab.set_config(ios, lab.config_of(ios).replace("!\nend", "ntp server 192.0.2.123\n!\nend"))
    second = backup(app)
    assert second.result["changed"] == [ios]
    fixed = result_of(ios, "NTP server")
    assert fixed.compliant and fixed.remediation == "" and fixed.commit == second.result["commit"]
    assert result_of(eos, "NTP server").checked_at == eos_checked
    [change] = second.result["compliance_changes"]
    assert change["device"] == ios and change["rule"] == "NTP server" and change["compliant"]
    history = compliance.device_history(inventory.get_by_name(ios).id)
    ntp_history = [(c.compliant, c.commit) for c, rule in history if rule == "NTP server"]
    assert ntp_history == [(True, second.result["commit"]), (False, first.result["commit"])]

    # An edit is a new version: a check run re-checks every device in its scope.
    rule_id = db.session.scalar(
        select(ComplianceRule.id).where(ComplianceRule.name == "NTP server")
    )
    compliance.update_rule(rule_id, actor="olga", required="ntp server 192.0.2.124")
    check_run = db.session.scalar(
        select(JobRun)
        .where(JobRun.job_name == compliance.CHECK_JOB_NAME)
        .order_by(JobRun.id.desc())
    )
    drain(app)
    check_run = reload(check_run.id)
    assert check_run.status == "COMPLETED_SUCCESS", check_run.message
    again = result_of(ios, "NTP server")
    assert not again.compliant and again.rule_version == 2
    assert again.remediation == "ntp server 192.0.2.124"
    assert result_of(eos, "NTP server").rule_version == 2
    # the portfast rule did not change: its results were not computed again
    assert result_of(ios, "Portfast on GigabitEthernet").checked_at == portfast.checked_at
    changes = check_run.result["data"]["compliance_changes"]
    assert [(c["device"], c["compliant"]) for c in changes] == [(ios, False)]


def test_the_api_edits_rules_and_answers_summary_and_device_results(app, ctx, client, lab):
    ios, _, _ = names(lab)
    api = Api(client=client, tokens=make_tokens(app))
    created = ok(api.post("/api/v1/compliance/rules", NTP_IOS, as_="operator"), 201)
    assert created["version"] == 1 and created["platforms"] == ["arista_eos", "cisco_ios"]
    # Bad input: each a 4xx with the field and the line at fault, nothing saved.
    bad_regex = api.post(
        "/api/v1/compliance/rules",
        {"name": "bad", "forbidden": "hostname x\nre:snmp-server (community"},
        as_="operator",
    )
    assert "forbidden, line 2" in error(bad_regex, 422)["fields"]["forbidden"]
    empty = api.post("/api/v1/compliance/rules", {"name": "empty"}, as_="operator")
    assert error(empty, 422)["fields"]
    unknown = api.post(
        "/api/v1/compliance/rules",
        {"name": "typo", "platforms": ["cisko_ios"], "required": "x"},
        as_="operator",
    )
    assert "cisco_ios" in error(unknown, 422)["fields"]["platforms"]
    assert api.post("/api/v1/compliance/rules", NTP_IOS, as_="operator").status_code == 409
    assert api.post("/api/v1/compliance/rules", PORTFAST, as_="viewer").status_code == 403
    assert [r["name"] for r in ok(api.get("/api/v1/compliance/rules", as_="viewer"))["items"]] == [
        "NTP server"
    ]

    backup(app)
    summary = ok(api.get("/api/v1/compliance", as_="viewer"))["items"]
    assert summary == [
        {
            "rule": {"id": created["id"], "name": "NTP server"},
            "severity": "high",
            "compliant": 0,
            "failing": 2,
            "errors": 0,
            "not_checked_or_out_of_scope": 1,
        }
    ]
    assert ok(api.get("/api/v1/compliance?severity=low", as_="viewer"))["items"] == []
    ios_id = inventory.get_by_name(ios).id
    device = ok(api.get(f"/api/v1/devices/{ios_id}/compliance", as_="viewer"))
    assert device["commit"] and device["checked_at"]
    [item] = device["items"]
    assert item["rule"]["name"] == "NTP server" and item["compliant"] is False
    assert item["missing"] == ["ntp server 192.0.2.123"]
    assert item["remediation"] == "ntp server 192.0.2.123"
    assert api.get("/api/v1/devices/999999/compliance", as_="viewer").status_code == 404

    patched = ok(
        api.patch(
            f"/api/v1/compliance/rules/{created['id']}",
            {"severity": "critical"},
            as_="operator",
        )
    )
    assert patched["version"] == 2 and patched["severity"] == "critical"
    bad_patch = api.patch(
        f"/api/v1/compliance/rules/{created['id']}", {"required": "re:("}, as_="operator"
    )
    assert bad_patch.status_code == 422
    assert compliance.get_rule(created["id"]).required == NTP_IOS["required"]
    scrape = client.get("/metrics")  # no ROOKERY_METRICS_TOKEN set: open
    assert scrape.status_code == 200
    failing = 'rookery_compliance_failing_devices{rule="NTP server",severity="critical"} 2.0'
    assert failing in scrape.get_data(as_text=True)
    assert api.delete(f"/api/v1/compliance/rules/{created['id']}", as_="viewer").status_code == 403
    assert (
        api.delete(f"/api/v1/compliance/rules/{created['id']}", as_="operator").status_code == 204
    )
    assert db.session.scalar(select(ComplianceResult.device_id)) is None
    assert db.session.scalar(select(ComplianceChange.id)) is None
    drain(app)


GOOD_MODULE = """
RULE_META = {
    "name": "Hostname is the device name",
    "description": "The hostname line names the device as the inventory does.",
    "severity": "medium",
    "platforms": ["cisco_ios", "arista_eos"],
}


def check(config, device):
    if f"hostname {device['name']}" in config:
        return []
    return [{"message": "hostname differs", "remediation": f"hostname {device['name']}"}]
"""

RAISING_MODULE = """
RULE_META = {"name": "Raises", "severity": "low"}


def check(config, device):
    return {"not": "a list"}[device["name"]]
"""


def test_python_rule_modules_are_checked_and_broken_ones_skipped(app, ctx, lab, rules_dir):
    ios, eos, junos = names(lab)
    (rules_dir / "hostname.py").write_text(textwrap.dedent(GOOD_MODULE))
    (rules_dir / "raises.py").write_text(textwrap.dedent(RAISING_MODULE))
    (rules_dir / "broken.py").write_text("RULE_META = {'name': 'Broken'\n")
    skipped = compliance.sync_modules()
    db.session.commit()
    assert [(s.path.rsplit("/", 1)[-1], "SyntaxError" in s.reason) for s in skipped] == [
        ("broken.py", True)
    ]
    first = backup(app)
    assert result_of(ios, "Hostname is the device name").compliant
    assert result_of(junos, "Hostname is the device name") is None  # out of scope
    raised = result_of(ios, "Raises")
    assert raised is not None and not raised.compliant and "KeyError" in raised.error
    lab.set_config(eos, lab.config_of(eos).replace(f"hostname {eos}", "hostname wrong-name"))
    backup(app)
    wrong = result_of(eos, "Hostname is the device name")
    assert not wrong.compliant and wrong.remediation == f"hostname {eos}"
    assert first.status == "COMPLETED_SUCCESS"
    # A module edited into a broken one keeps its rule, skipped with the reason.
    (rules_dir / "hostname.py").write_text("RULE_META = {}\ndef check(config, device): return []\n")
    compliance.sync_modules()
    db.session.commit()
    row = db.session.scalar(
        select(ComplianceRule).where(ComplianceRule.name == "Hostname is the device name")
    )
    assert row.skipped_reason and "name" in row.skipped_reason
    with pytest.raises(Exception, match="edit the file"):
        compliance.update_rule(row.id, actor="olga", severity="low")


def test_a_device_leaving_compliance_is_sent_to_webhooks(app, ctx, lab):
    ios, _, _ = names(lab)
    receiver = Receiver().start()
    try:
        job = jobs.create_job(
            name="nightly", job_type="config_backup", target_tags=["lab"], actor="test"
        )
        _, secret = webhook_service.create_webhook(
            job.id, receiver.url, ["compliance_changed"], actor="test"
        )
        compliance.create_rule(
            actor="olga",
            name="No telnet",
            platforms=["cisco_ios"],
            forbidden="re:line vty .*\n re:transport input .*telnet.*",
        )
        drain(app)
        backup(app, job)
        drain(app)
        assert receiver.received == [], "first checks are not transitions"
        lab.set_config(
            ios,
            lab.config_of(ios).replace("!\nend", "line vty 0 4\n transport input telnet\n!\nend"),
        )
        backup(app, job)
        drain(app)
        [delivery] = receiver.received
        assert verify(secret, delivery)
        assert delivery.headers["X-Rookery-Event"] == "compliance_changed"
        [item] = delivery.payload["compliance"]
        assert item["device"] == ios and item["rule"] == "No telnet"
        assert item["compliant"] is False
        assert item["unexpected"] == ["line vty 0 4\n transport input telnet"]
    finally:
        receiver.stop()


def test_a_broken_check_never_fails_a_backup(app, ctx, lab, monkeypatch):
    compliance.create_rule(actor="olga", **NTP_IOS)
    drain(app)

    def explode(*args, **kwargs):
        raise RuntimeError("rules exploded")

    # where the units check each fetched config...
    monkeypatch.setattr(compliance, "findings_for_backup", explode)
    run = backup(app)
    assert len(run.result["changed"]) == 3 and run.result["checks"] == 0
    assert db.session.scalar(select(ComplianceResult.device_id)) is None
    # ...and where the finalize stores the findings
    monkeypatch.undo()
    monkeypatch.setattr(compliance, "record_backup", explode)
    ios = lab.devices[0].name
    lab.set_config(ios, lab.config_of(ios).replace("!\nend", "ntp server 192.0.2.9\n!\nend"))
    run = backup(app)
    assert run.result["compliance_error"] == "RuntimeError: rules exploded"
    assert run.result["commit"] and run.result["changed"] == [ios]
    assert db.session.scalar(select(ComplianceResult.device_id)) is None
