"""Command runs that tell the truth, against emulated devices (FakeNOS on 127.0.0.1).

A command holding a comma is one command, from every way a job is written (API values,
the job form, ``rookery job create --param``); a device that refuses a command fails
while the others succeed; a TextFSM failure keeps the raw output; a backup never commits
a device's error message as its configuration.
"""

from __future__ import annotations

import git
import pytest
from sqlalchemy import select

from app.cli import cli
from app.demo_lab import default_fleet
from app.extensions import db
from app.models import DeviceResult, Job, JobLog, JobRun
from app.services import inventory, jobs, runs
from tests.conftest import csrf_token, make_config
from tests.integration.helpers import drain, load_lab_devices, reload

pytest_plugins = ["tests.devices"]

COMMA_COMMAND = "show interfaces | include up, down"
COMMA_ANSWER = "Ethernet0/0 is up, line protocol is down"


@pytest.fixture
def app(database_url, tmp_path, app_factory):
    return app_factory(
        make_config(
            database_url,
            tmp_path / "instance",
            ROOKERY_CONFIG_REPO=str(tmp_path / "configs"),
            ROOKERY_SSH_CONNECT_TIMEOUT=3,
            ROOKERY_SSH_READ_TIMEOUT=4,
            ROOKERY_CONNECT_RETRIES=0,
            ROOKERY_DEFAULT_RETRIES=0,
        )
    )


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def fleet(ctx, device_lab):
    """The session lab's five devices (ios, eos, nxos, xr, junos) in the inventory."""
    load_lab_devices(device_lab.devices, device_lab)
    return device_lab


def run_commands(app, commands, **params) -> JobRun:
    job = jobs.create_job(
        name="show",
        job_type="run_commands",
        target_tags=["lab"],
        params={"commands": commands, **params},
        no_overlap=False,
        actor="test",
    )
    run = runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    return reload(run.id)


def results(run_id: int) -> dict[str, DeviceResult]:
    rows = db.session.scalars(select(DeviceResult).where(DeviceResult.run_id == run_id))
    return {r.device_name: r for r in rows}


def log_lines(run_id: int, level: str) -> list[str]:
    rows = db.session.scalars(
        select(JobLog.message).where(JobLog.run_id == run_id, JobLog.level == level)
    )
    return list(rows)


def test_a_command_with_a_comma_runs_as_one_command(app, ctx, device_lab_factory):
    (ios,) = default_fleet(1, ["cisco_ios"])
    ios.commands[COMMA_COMMAND] = COMMA_ANSWER
    lab = device_lab_factory([ios])
    load_lab_devices(lab.devices, lab)

    run = run_commands(app, f"{COMMA_COMMAND}\nshow clock")

    result = results(run.id)[ios.name]
    assert run.status == "COMPLETED_SUCCESS", result.message
    assert result.data["commands"] == [COMMA_COMMAND, "show clock"]
    assert f"{ios.name}# {COMMA_COMMAND}\n{COMMA_ANSWER}\n" in result.output
    assert result.output.count(f"{ios.name}# ") == 2


def test_a_refused_command_fails_only_the_devices_that_refuse_it(app, fleet):
    # FakeNOS knows "show clock" on IOS, EOS and NX-OS only: XR and Junos refuse it.
    run = run_commands(app, "show version\nshow clock")

    by_device = results(run.id)
    refusing = {d.name for d in fleet.devices if d.platform in ("cisco_xr", "juniper_junos")}
    assert run.status == "COMPLETED_PARTIAL_FAILURE"
    assert {name for name, r in by_device.items() if r.status == "failed"} == refusing
    for name, result in by_device.items():
        assert f"{name}# show version" in result.output  # every output is kept
        assert f"{name}# show clock" in result.output
        if name in refusing:
            assert result.message == "'show clock' refused: Unknown command"
            assert result.data["refused"] == {"show clock": "Unknown command"}
        else:
            assert result.status == "success", result.message
            assert "refused" not in result.data
    errors = log_lines(run.id, "error")
    assert sorted(errors) == sorted(f"{n}: 'show clock' refused: Unknown command" for n in refusing)


def test_invalid_input_on_ios_fails_the_device(app, ctx, device_lab_factory):
    ios, eos = default_fleet(2, ["cisco_ios", "arista_eos"])
    lab = device_lab_factory([ios, eos])
    load_lab_devices(lab.devices, lab)

    run = run_commands(app, ["show clock", "show bogus", "show nonsense"])

    by_device = results(run.id)
    assert by_device[ios.name].status == "failed"
    assert by_device[ios.name].message == (
        "2 of 3 commands refused; first 'show bogus' refused: "
        "% Invalid input detected at '^' marker."
    )
    assert by_device[eos.name].message.startswith("2 of 3 commands refused; first 'show bogus'")
    assert "% Invalid input" in by_device[eos.name].output


def test_a_textfsm_failure_keeps_the_raw_output_and_succeeds(app, fleet):
    # ntc-templates parses show version of IOS and NX-OS; its EOS, XR and Junos templates
    # raise TextFSMError on FakeNOS's answers (a line their rules do not expect).
    run = run_commands(app, "show version", textfsm=True)

    by_device = results(run.id)
    assert run.status == "COMPLETED_SUCCESS", {n: r.message for n, r in by_device.items()}
    unparsed = {
        d.name for d in fleet.devices if d.platform in ("arista_eos", "cisco_xr", "juniper_junos")
    }
    for name, result in by_device.items():
        assert result.status == "success"
        assert f"{name}# show version\n" in result.output
        assert len(result.output) > 100
        if name in unparsed:
            assert "parsed" not in result.data
            assert result.data["unparsed"]["show version"].startswith("TextFSMError: ")
    parsed = {n for n, r in by_device.items() if "parsed" in r.data}
    assert parsed == {d.name for d in fleet.devices} - unparsed
    warnings = log_lines(run.id, "warning")
    for name in unparsed:
        assert any(
            w.startswith(f"{name}: 'show version' not parsed, kept as text: ") for w in warnings
        )


def test_a_command_without_template_is_kept_as_text(app, ctx, device_lab_factory):
    (ios,) = default_fleet(1, ["cisco_ios"])
    ios.commands["show rookery"] = "nothing to parse here"
    lab = device_lab_factory([ios])
    load_lab_devices(lab.devices, lab)

    run = run_commands(app, "show rookery\nshow clock", textfsm=True)

    result = results(run.id)[ios.name]
    assert run.status == "COMPLETED_SUCCESS", result.message
    assert "nothing to parse here" in result.output
    assert list(result.data["parsed"]) == ["show clock"]
    assert "template not found" in result.data["unparsed"]["show rookery"]


def test_backup_refuses_an_error_answer_as_a_config(app, ctx, device_lab_factory):
    ios, eos = default_fleet(2, ["cisco_ios", "arista_eos"])
    lab = device_lab_factory([ios, eos])
    load_lab_devices(lab.devices, lab)
    lab.set_config(ios.name, "                 ^\n% Invalid input detected at '^' marker.\n")
    job = jobs.create_job(
        name="backup", job_type="config_backup", target_tags=["lab"], actor="test"
    )

    run = runs.start_run(job, triggered_by="test")
    drain(app, concurrency=2)
    run = reload(run.id)

    by_device = results(run.id)
    assert by_device[ios.name].status == "failed"
    assert by_device[ios.name].message == (
        "The device refused the configuration command: % Invalid input detected at '^' marker."
    )
    assert by_device[eos.name].status == "success", by_device[eos.name].message
    repo = git.Repo(app.config["ROOKERY_CONFIG_REPO"])
    assert [item.path for item in repo.head.commit.tree.traverse()] == [f"{eos.name}.cfg"]


# ------------------------------------------------------------------ the ways a job is written


def test_job_form_keeps_commas_in_commands(app, client, auth):
    with app.app_context():  # the form saves device jobs with known targets only
        inventory.create_device(
            name="r1", host="192.0.2.1", platform="cisco_ios", tags=["lab"], actor="t"
        )
    auth.create("olga", "operator-pw-1", "operator")
    auth.login("olga", "operator-pw-1")
    token = csrf_token(client, "/jobs/new?job_type=run_commands")
    created = client.post(
        "/jobs/new",
        data={
            "csrf_token": token,
            "job_type": "run_commands",
            "name": "shows",
            "p_commands": f"{COMMA_COMMAND}\r\n\r\n  show clock  \r\n",
            "p_textfsm": ["0"],
            "target_tags": "lab",
            "priority": "normal",
            "schedule_kind": "none",
            "timezone": "UTC",
            "no_overlap": ["0"],
            "enabled": ["0", "1"],
        },
    )
    assert created.status_code in (200, 302, 303), created.text
    with app.app_context():
        job = db.session.scalar(select(Job).where(Job.name == "shows"))
        assert job is not None
        assert job.params["commands"] == [COMMA_COMMAND, "show clock"]
    edit = client.get(f"/jobs/{job.id}/edit")
    assert f"{COMMA_COMMAND}\nshow clock</textarea>" in edit.text


@pytest.mark.parametrize(
    "args",
    [
        ("--param", f"commands={COMMA_COMMAND}", "--param", "commands=show clock"),
        ("--param", f"commands={COMMA_COMMAND}\nshow clock\n"),
    ],
)
def test_cli_param_gives_a_list_by_repeating_or_by_lines(app, ctx, args):
    result = app.test_cli_runner().invoke(
        cli, ["job", "create", "shows", "--type", "run_commands", "--tag", "lab", *args]
    )
    assert result.exit_code == 0, result.output
    job = db.session.scalar(select(Job).where(Job.name == "shows"))
    assert job.params["commands"] == [COMMA_COMMAND, "show clock"]
