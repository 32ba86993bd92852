"""The script-facing ``rookery`` commands on a real database: jobs, runs, logs, devices,
tokens, schedules; --json output, exit codes and the one-line errors."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import func, select

from app.cli import cli
from app.extensions import db
from app.models import Device, Job, JobRun, Schedule
from app.services import inventory, runs, tokens
from tests.integration.helpers import drain, make_job, reload, wait_for


def invoke(runner, *args: str, input: str | None = None):
    return runner.invoke(cli, list(args), input=input)


def as_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def add_device(name: str, *tags: str) -> Device:
    return inventory.create_device(
        actor="test", name=name, host="192.0.2.1", platform="cisco_ios", tags=list(tags)
    )


def drain_when_queued(app, delay: float = 0.0, runs: int = 1) -> threading.Thread:
    """Drain the queue in a thread once ``runs`` runs exist (after ``delay`` seconds): a
    second run's drain must not start, find nothing and end before that run is queued."""

    def work() -> None:
        with app.app_context():
            wait_for(
                lambda: (
                    (db.session.scalar(select(func.count()).select_from(JobRun)) or 0) >= runs
                    or db.session.rollback()
                ),
                what=f"{runs} queued run(s)",
            )
            db.session.rollback()
            time.sleep(delay)
            drain(app)
            db.session.remove()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------------ jobs


def test_job_create_from_options_list_and_show(runner, ctx):
    device = add_device("r1", "core")
    result = invoke(
        runner,
        "job",
        "create",
        "nightly",
        "--type",
        "devjob",
        "--tag",
        "core",
        "--device",
        "r1",
        "--priority",
        "high",
        "--max-retries",
        "2",
        "--retry-backoff",
        "10",
        "--retry-backoff-max",
        "100",
        "--timeout",
        "60",
        "--label",
        "ops",
        "--allow-overlap",
        "--every",
        "60",
    )
    assert result.exit_code == 0, result.output
    assert "Created job #" in result.output and "every hour" in result.output
    job = db.session.scalar(select(Job).where(Job.name == "nightly"))
    assert (job.priority, job.max_retries, job.retry_delay_seconds) == (10, 2, 10)
    assert (job.retry_max_delay_seconds, job.timeout_seconds, job.no_overlap) == (100, 60, False)
    assert [d.name for d in job.target_devices] == ["r1"]

    listed = as_json(invoke(runner, "job", "list", "--json"))
    assert [j["name"] for j in listed] == ["nightly"]
    assert listed[0]["targets"] == {"tags": ["core"], "devices": [{"id": device.id, "name": "r1"}]}
    human = invoke(runner, "job", "list")
    assert human.output.splitlines()[0].split() == [
        "ID",
        "NAME",
        "TYPE",
        "PRIORITY",
        "ENABLED",
        "SCHEDULES",
        "TARGETS",
    ]
    assert human.output.splitlines()[1].split()[3] == "high", "priority as a word"
    shown = as_json(invoke(runner, "job", "show", str(job.id), "--json"))
    assert shown["name"] == "nightly" and shown["allow_overlap"] is True
    assert shown["schedules"][0]["kind"] == "interval"
    assert "Target tags:" in invoke(runner, "job", "show", "nightly").output


def test_job_create_from_yaml_file_with_the_api_fields(runner, ctx, tmp_path):
    add_device("r1", "edge")
    add_device("r2")
    first = make_job("first")
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "name: weekly\n"
        "job_type: writer\n"
        "params: {tag: t1, token: s3cret}\n"
        "targets: {tags: [edge], devices: [r2]}\n"
        "priority: low\n"
        "max_retries: 1\n"
        "retry_backoff_seconds: 5\n"
        "retry_backoff_max_seconds: 50\n"
        "timeout_seconds: 30\n"
        "description: from a file\n"
        "labels: [a, b]\n"
        f"depends_on: [{first.id}]\n"
        "allow_overlap: false\n"
        "schedule: {kind: cron, expression: '0 2 * * *', timezone: Europe/Berlin}\n"
    )
    data = as_json(invoke(runner, "job", "create", "--from-file", str(spec), "--json"))
    assert data["name"] == "weekly" and data["params"]["token"] == "***"
    assert data["retry_backoff_seconds"] == 5 and data["depends_on"] == [first.id]
    assert data["schedules"][0]["cron"] == "0 2 * * *"
    assert data["targets"]["devices"][0]["name"] == "r2"
    # options win over the file
    json_spec = tmp_path / "job.json"
    json_spec.write_text(json.dumps({"name": "x", "job_type": "noop", "schedule": None}))
    result = invoke(runner, "job", "create", "other", "--from-file", str(json_spec))
    assert result.exit_code == 0, result.output
    assert db.session.scalar(select(Job.job_type).where(Job.name == "other")) == "noop"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: j\njob_type: noop\nschedule: {kind: cron, expression: 'not cron'}\n", "cron"),
        ("name: j\njob_type: noop\ncolour: red\n", "Unknown field(s)"),
        ("name: j\njob_type: noop\ntargets: {devices: [ghost]}\n", "no device named 'ghost'"),
        ("name: j\njob_type: nosuchtype\n", "nosuchtype"),
        ("name: [j\n", "not valid YAML or JSON"),
    ],
)
def test_job_create_bad_input_is_one_line_and_creates_nothing(
    runner, ctx, tmp_path, content, message
):
    spec = tmp_path / "job.yaml"
    spec.write_text(content)
    result = invoke(runner, "job", "create", "--from-file", str(spec))
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error:") and len(result.output.strip().splitlines()) == 1
    assert message in result.output
    assert db.session.scalar(select(func.count()).select_from(Job)) == 0
    assert db.session.scalar(select(func.count()).select_from(Schedule)) == 0


def test_job_create_needs_a_name_and_type(runner):
    result = invoke(runner, "job", "create", "--type", "noop")
    assert result.exit_code == 2
    assert "NAME" in result.output


def test_job_show_unknown_is_an_error(runner):
    result = invoke(runner, "job", "show", "nope")
    assert (result.exit_code, result.output.strip()) == (1, "Error: No job named 'nope'.")


def test_job_run_wait_returns_the_final_status(runner, app, ctx):
    make_job("quick", "noop")
    thread = drain_when_queued(app)
    data = as_json(invoke(runner, "job", "run", "quick", "--wait", "60", "--json"))
    thread.join(30)
    assert data["status"] == "COMPLETED_SUCCESS"
    failing = make_job("failing", "noop", params={"fail": True})
    thread = drain_when_queued(app, runs=2)
    result = invoke(runner, "job", "run", str(failing.id), "--wait", "60")
    thread.join(30)
    assert result.exit_code == 1
    assert "COMPLETED_FAILURE" in result.output


def test_job_run_wait_without_a_worker_exits_1_and_now_takes_a_job_type(runner, ctx):
    idle = make_job("idle", "noop")
    result = invoke(runner, "job", "run", "idle", "--wait", "0.5")
    assert result.exit_code == 1
    assert "still QUEUED after 0.5s" in result.output
    now = invoke(runner, "job", "run", "noop", "--now")
    assert (now.exit_code, now.output.strip()) == (0, "waited 0s")
    drain(ctx)  # a worker comes at last
    queued = db.session.scalars(select(JobRun).where(JobRun.job_id == idle.id)).one()
    assert reload(queued.id).status == "COMPLETED_SUCCESS"


# ------------------------------------------------------------------------------ runs


def test_run_list_show_and_unknown_run(runner, app, ctx):
    add_device("good-1", "lab")
    add_device("bad-1", "lab")
    job = make_job("visit", "devjob", target_tags=["lab"])
    run = runs.start_run(job, triggered_by="test")
    other = runs.start_run(make_job("n", "noop"), triggered_by="test")
    drain(app)

    listed = as_json(invoke(runner, "run", "list", "--json"))
    assert [r["id"] for r in listed] == [other.id, run.id]
    only = as_json(invoke(runner, "run", "list", "--job", "visit", "--json"))
    assert [(r["id"], r["status"]) for r in only] == [(run.id, "COMPLETED_PARTIAL_FAILURE")]
    by_status = as_json(invoke(runner, "run", "list", "--status", "COMPLETED_SUCCESS", "--json"))
    assert [r["id"] for r in by_status] == [other.id]
    paged = invoke(runner, "run", "list", "--limit", "1")
    assert f"--before {other.id}" in paged.output

    shown = as_json(invoke(runner, "run", "show", str(run.id), "--json"))
    assert shown["progress"] == {"done": 2, "total": 2}
    assert {(r["device"], r["status"]) for r in shown["results"]} == {
        ("bad-1", "failed"),
        ("good-1", "success"),
    }
    assert "job.completed" in [e["type"] for e in shown["events"]]
    human = invoke(runner, "run", "show", str(run.id)).output
    assert "Devices:" in human and "bad-1" in human and "Events:" in human

    missing = invoke(runner, "run", "show", "9999")
    assert (missing.exit_code, missing.output.strip()) == (1, "Error: No run #9999.")
    bad = invoke(runner, "run", "list", "--status", "DONE")
    assert bad.exit_code == 1 and "Unknown status: DONE" in bad.output


def test_run_cancel_and_relaunch_failed_only(runner, app, ctx):
    queued = runs.start_run(make_job("later", "noop"), triggered_by="test")
    cancelled = as_json(invoke(runner, "run", "cancel", str(queued.id), "--json"))
    assert cancelled["status"] == "CANCELLED"
    again = invoke(runner, "run", "cancel", str(queued.id))
    assert again.exit_code == 1 and again.output.startswith("Error: Run #")

    add_device("good-1", "lab")
    bad = add_device("bad-1", "lab")
    run = runs.start_run(make_job("visit", "devjob", target_tags=["lab"]), triggered_by="test")
    drain(app)
    data = as_json(invoke(runner, "run", "relaunch", str(run.id), "--failed-only", "--json"))
    assert data["status"] == "QUEUED" and data["triggered_by"] == f"relaunch:{run.id}"
    assert reload(data["id"]).device_ids == [bad.id]
    still = invoke(runner, "run", "relaunch", str(data["id"]))
    assert still.exit_code == 1 and "relaunch it once it has ended" in still.output
    drain(app)
    relaunched = as_json(invoke(runner, "run", "show", str(data["id"]), "--json"))
    assert [r["device"] for r in relaunched["results"]] == ["bad-1"]


def test_run_logs_prints_lines_filters_and_json_lines(runner, app, ctx):
    add_device("good-1", "lab")
    add_device("bad-1", "lab")
    run = runs.start_run(make_job("visit", "devjob", target_tags=["lab"]), triggered_by="test")
    drain(app)
    plain = invoke(runner, "run", "logs", str(run.id))
    assert plain.exit_code == 0, plain.output
    assert "visiting good-1" in plain.output and "visiting bad-1" in plain.output
    lines = [
        json.loads(line)
        for line in invoke(runner, "run", "logs", str(run.id), "--json").stdout.splitlines()
    ]
    assert lines and all(line["run_id"] == run.id for line in lines)
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    errors = invoke(runner, "run", "logs", str(run.id), "--level", "error", "--json")
    assert {json.loads(x)["level"] for x in errors.stdout.splitlines()} <= {"error", "critical"}
    assert invoke(runner, "run", "logs", str(run.id), "--level", "loud").exit_code == 1
    assert invoke(runner, "run", "logs", "9999").output.strip() == "Error: No run #9999."


def test_run_logs_follow_prints_lines_as_they_come_and_ends_with_the_run(runner, app, ctx):
    job = make_job("slow", "noop", params={"seconds": 1, "message": "slept"})
    run = runs.start_run(job, triggered_by="test")
    thread = drain_when_queued(app, delay=1.0)  # the follower is listening before it starts
    started = time.monotonic()
    result = invoke(runner, "run", "logs", str(run.id), "--follow")
    thread.join(30)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 25
    out = result.output.splitlines()
    assert any("Waiting 1s" in line for line in out)
    assert out[-1] == f"-- Run #{run.id}: COMPLETED_SUCCESS - slept"
    # an ended run: prints everything at once and returns; a failed one exits 1
    again = invoke(runner, "run", "logs", str(run.id), "--follow", "--json")
    assert again.exit_code == 0 and all(json.loads(x) for x in again.stdout.splitlines())
    failing = runs.start_run(make_job("bad", "noop", params={"fail": True}), triggered_by="t")
    thread = drain_when_queued(app, delay=0.5)
    result = invoke(runner, "run", "logs", str(failing.id), "-f")
    thread.join(30)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(f"-- Run #{failing.id}: COMPLETED_FAILURE")


def test_run_options_of_the_server_do_not_mix_with_subcommands(runner):
    result = invoke(runner, "run", "--port", "8080", "list")
    assert result.exit_code == 2
    assert "--port" in result.output


# --------------------------------------------------------------------------- devices

GOOD_CSV = (
    "name,host,port,platform,tags\nr1,10.0.0.1,22,cisco_ios,core;lab\nr2,10.0.0.2,,arista_eos,\n"
)
BAD_CSV = (
    "name,host,port,platform,tags\n"
    "r1,10.0.0.1,22,cisco_ios,core\n"
    "r2,10.0.0.2,99999,cisco_ios,\n"
    "r3,,22,cisco_ios,\n"
)


def test_device_import_list_export_round_trip(runner, ctx, tmp_path):
    source = tmp_path / "devices.csv"
    source.write_text(GOOD_CSV)
    result = invoke(runner, "device", "import", str(source))
    assert result.exit_code == 0, result.output
    assert "2 created, 0 updated" in result.output
    listed = as_json(invoke(runner, "device", "list", "--json"))
    assert [(d["name"], d["tags"]) for d in listed] == [("r1", ["core", "lab"]), ("r2", [])]
    tagged = as_json(invoke(runner, "device", "list", "--tag", "core", "--json"))
    assert [d["name"] for d in tagged] == ["r1"]
    assert "r2" in invoke(runner, "device", "list").output
    assert "No devices with tag" in invoke(runner, "device", "list", "--tag", "none").output

    exported = invoke(runner, "device", "export")
    assert exported.stdout.startswith("name,host,port,platform,driver,tags,enabled,notes")
    out = tmp_path / "export.csv"
    assert invoke(runner, "device", "export", "--output", str(out)).exit_code == 0
    again = invoke(runner, "device", "import", str(out), "--json")
    assert as_json(again)["unchanged"] == 2

    folder = tmp_path / "nornir"
    assert (
        invoke(runner, "device", "export", "--format", "nornir", "-o", str(folder)).exit_code == 0
    )
    nornir = invoke(
        runner,
        "device",
        "import",
        str(folder / "hosts.yaml"),
        "--groups",
        str(folder / "groups.yaml"),
        "--json",
    )
    assert as_json(nornir)["errors"] == []
    needs_folder = invoke(runner, "device", "export", "--format", "nornir")
    assert needs_folder.exit_code == 2 and "--output FOLDER" in needs_folder.output


def test_device_import_errors_by_line_and_nothing_imported(runner, ctx, tmp_path):
    source = tmp_path / "bad.csv"
    source.write_text(BAD_CSV)
    result = invoke(runner, "device", "import", str(source))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("bad.csv: line 3 (r2): ")
    assert lines[1].startswith("bad.csv: line 4 (r3): ")
    assert lines[-1].startswith("Error: 2 bad row(s) in bad.csv; nothing was imported")
    assert db.session.scalar(select(func.count()).select_from(Device)) == 0

    data = json.loads(invoke(runner, "device", "import", str(source), "--json").stdout)
    assert [e["line"] for e in data["errors"]] == [3, 4] and data["imported"] is False

    partial = invoke(runner, "device", "import", str(source), "--partial")
    assert partial.exit_code == 0, partial.output
    assert "1 created" in partial.output and "2 bad row(s) skipped" in partial.output
    assert "line 3 (r2)" in partial.output
    assert db.session.scalars(select(Device.name)).all() == ["r1"]


def test_device_import_bad_nornir_names_the_line(runner, ctx, tmp_path):
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("r1:\n  hostname: 10.0.0.1\n  platform: ios\nr2:\n  platform: ios\n")
    result = invoke(runner, "device", "import", str(hosts))
    assert result.exit_code == 1
    assert "hosts.yaml: line 4 (r2): No hostname" in result.output
    assert (
        invoke(
            runner, "device", "import", str(hosts), "--format", "csv", "--groups", str(hosts)
        ).exit_code
        == 2
    )


# ------------------------------------------------------------------------ users, tokens


def test_user_create_then_token_create_last_line_authenticates(runner, ctx):
    created = invoke(
        runner,
        "user",
        "create",
        "ops",
        "--role",
        "operator",
        "--password-stdin",
        input="long-enough-pw\n",
    )
    assert created.exit_code == 0, created.output
    result = invoke(runner, "token", "create", "ops", "--name", "ci", "--expires-days", "30")
    assert result.exit_code == 0, result.output
    token = result.stdout.splitlines()[-1]
    assert token.startswith("rk_") and " " not in token
    user = tokens.authenticate(token)
    assert user is not None and user.username == "ops"

    listed = as_json(invoke(runner, "token", "list", "--user", "ops", "--json"))
    assert [(t["name"], t["state"]) for t in listed] == [("ci", "active")]
    assert token not in invoke(runner, "token", "list").output
    prefix = listed[0]["prefix"].rstrip("_")
    revoked = invoke(runner, "token", "revoke", prefix)
    assert revoked.exit_code == 0 and "Revoked" in revoked.output
    db.session.expire_all()
    assert tokens.authenticate(token) is None
    assert as_json(invoke(runner, "token", "list", "--json"))[0]["state"] == "revoked"

    unknown = invoke(runner, "token", "create", "nobody")
    assert (unknown.exit_code, unknown.output.strip()) == (1, "Error: No user named 'nobody'.")
    assert invoke(runner, "token", "revoke", "rk_00000000").exit_code == 1


# ------------------------------------------------------------------------- schedules


def test_schedule_list(runner, ctx):
    assert invoke(runner, "schedule", "list").output.strip() == "No schedules."
    invoke(runner, "job", "create", "a", "--type", "noop", "--every", "15")
    invoke(runner, "job", "create", "b", "--type", "noop", "--cron", "0 3 * * *")
    data = as_json(invoke(runner, "schedule", "list", "--json"))
    assert [(s["job"], s["description"]) for s in data] == [
        ("a", "every 15 minutes"),
        ("b", "cron 0 3 * * * (UTC)"),
    ]
    only = as_json(invoke(runner, "schedule", "list", "--job", "b", "--json"))
    assert [s["job"] for s in only] == ["b"]
    assert "every 15 minutes" in invoke(runner, "schedule", "list").output


def test_run_alone_still_starts_the_server(runner):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke(runner, "run", "--port", str(port))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: Cannot listen on 127.0.0.1:{port}")
    assert "logs" in invoke(runner, "run", "--help").output
