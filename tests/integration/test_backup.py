"""Devices, credentials and the built-in network jobs against emulated devices (fakenos).

Five platforms answer over real SSH on 127.0.0.1; configs go into a real git repository.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import git
import pytest
from sqlalchemy import select, text

from app import dispatch
from app.extensions import db
from app.job_api import DeviceTarget
from app.models import Credential, Device, DeviceResult, JobRun
from app.services import credentials, inventory, jobs, runs
from tests.conftest import make_config
from tests.integration.helpers import drain, load_lab_devices, reload

pytest_plugins = ["tests.devices"]

WRONG_PASSWORD = "wrong-Pa55-everywhere"


@pytest.fixture
def lab_config(database_url, tmp_path, jobs_dir):
    (jobs_dir / "show_version.py").write_text(
        textwrap.dedent('''
        """A custom job: connects through device.connect() like the built-in ones."""
        JOB_META = {"job_type": "show_version", "targets": "devices"}

        def run(device, job_id, config, db):
            with device.connect() as session:
                output = session.send_command("show version")
            return {"message": f"{len(output)} bytes", "output": output}
    ''')
    )
    return make_config(
        database_url,
        tmp_path / "instance",
        ROOKERY_JOBS_PATH=str(jobs_dir),
        ROOKERY_CONFIG_REPO=str(tmp_path / "configs"),
        ROOKERY_SSH_CONNECT_TIMEOUT=3,
        ROOKERY_SSH_READ_TIMEOUT=4,
        ROOKERY_CONNECT_RETRIES=0,
        ROOKERY_DEFAULT_RETRIES=0,
        ROOKERY_CIRCUIT_FAILURES=2,
    )


@pytest.fixture
def app(lab_config, app_factory):
    return app_factory(lab_config)


@pytest.fixture
def fleet(app, device_lab):
    """The lab's five devices in the inventory, each with its own credential."""
    with app.app_context():
        load_lab_devices(device_lab.devices, device_lab)
        yield device_lab


def backup_job(name: str = "nightly", tags: tuple[str, ...] = ("lab",)):
    return jobs.create_job(
        name=name, job_type="config_backup", target_tags=list(tags), no_overlap=False, actor="test"
    )


def run_job(app, job, **options) -> JobRun:
    run = runs.start_run(job, triggered_by="test", **options)
    drain(app, concurrency=2)
    return reload(run.id)


def results(run_id: int) -> dict[str, DeviceResult]:
    return {
        r.device_name: r
        for r in db.session.scalars(select(DeviceResult).where(DeviceResult.run_id == run_id))
    }


def repo_of(app) -> git.Repo:
    return git.Repo(app.config["ROOKERY_CONFIG_REPO"])


def test_backup_commits_once_then_only_changes(app, fleet):
    job = backup_job()
    first = run_job(app, job)
    assert first.status == "COMPLETED_SUCCESS", results(first.id)
    repo = repo_of(app)
    assert len(list(repo.iter_commits())) == 1
    files = sorted(item.path for item in repo.head.commit.tree.traverse())
    assert files == sorted(f"{d.name}.cfg" for d in fleet.devices)
    assert f"Backup run #{first.id}" in repo.head.commit.message
    by_device = results(first.id)
    assert all(r.changed and r.commit_sha == repo.head.commit.hexsha for r in by_device.values())
    assert all(r.credential_name == f"cred-{name}" for name, r in by_device.items())
    assert first.result["commit"] == repo.head.commit.hexsha

    second = run_job(app, job)
    assert second.status == "COMPLETED_SUCCESS"
    assert len(list(repo.iter_commits())) == 1, "no change, no commit"
    assert second.result["commit"] is None
    assert not any(r.changed for r in results(second.id).values())

    changed = fleet.devices[0]
    fleet.set_config(changed.name, fleet.config_of(changed.name).replace("rev-1", "rev-2", 1))
    third = run_job(app, job)
    assert len(list(repo.iter_commits())) == 2
    assert third.result["changed"] == [changed.name]
    assert list(repo.head.commit.stats.files) == [f"{changed.name}.cfg"]
    from app import config_store

    store = config_store.store_for(app)
    history = store.history(changed.name)
    assert [v.sha for v in history] == [repo.head.commit.hexsha, first.result["commit"]]
    rows = store.diff(changed.name, history[1].sha, history[0].sha)
    assert [(r.left, r.right) for r in rows if r.kind == "changed"], "a diff shows the change"


def test_first_credential_wrong_second_right(app, fleet):
    wrong = credentials.create_credential(
        "everyone-wrong", "netops", WRONG_PASSWORD, priority=10, tags=["lab"], actor="test"
    )
    run = run_job(app, backup_job())
    assert run.status == "COMPLETED_SUCCESS", results(run.id)
    db.session.expire_all()
    wrong = db.session.get(Credential, wrong.id)
    assert (wrong.failure_count, wrong.success_count) == (len(fleet.devices), 0)
    for device in fleet.devices:
        right = db.session.scalar(
            select(Credential).where(Credential.name == f"cred-{device.name}")
        )
        assert (right.success_count, right.failure_count) == (1, 0)
        assert right.last_used_at is not None
    assert {r.connect_attempts for r in results(run.id).values()} == {2}


def test_unreachable_and_hanging_devices_fail_alone(app, fleet, closed_port, silent_server):
    inventory.create_device(
        name="gone",
        host="127.0.0.1",
        port=closed_port,
        platform="cisco_ios",
        tags=["lab"],
        actor="test",
    )
    inventory.create_device(
        name="mute",
        host="127.0.0.1",
        port=silent_server.port,
        platform="cisco_ios",
        tags=["lab"],
        actor="test",
    )
    hung = fleet.devices[1]
    fleet.set_hanging(hung.name)
    credentials.create_credential(
        "lab-any", "netops", WRONG_PASSWORD, priority=500, tags=["lab"], actor="test"
    )
    run = run_job(app, backup_job())
    by_device = results(run.id)
    assert run.status == "COMPLETED_PARTIAL_FAILURE"
    assert by_device["gone"].status == "unreachable"
    assert "refused" in by_device["gone"].message or "did not answer" in by_device["gone"].message
    assert by_device["mute"].status == "unreachable"
    assert by_device[hung.name].status == "timeout"
    assert "did not finish" in by_device[hung.name].message
    ok = [d.name for d in fleet.devices if d.name != hung.name]
    assert all(by_device[name].status == "success" for name in ok)
    assert run.result["by_status"] == {"success": 4, "unreachable": 2, "timeout": 1}


def test_circuit_opens_after_repeated_connection_failures(app, fleet, closed_port):
    inventory.create_device(
        name="flaky",
        host="127.0.0.1",
        port=closed_port,
        platform="cisco_ios",
        tags=["flaky"],
        actor="test",
    )
    credentials.create_credential(
        "flaky-cred", "netops", WRONG_PASSWORD, tags=["flaky"], actor="test"
    )
    job = backup_job("flaky-job", tags=("flaky",))
    statuses = [results(run_job(app, job).id)["flaky"].status for _ in range(3)]
    assert statuses == ["unreachable", "unreachable", "skipped"]
    run = reload(db.session.scalar(select(JobRun.id).order_by(JobRun.id.desc())))
    assert "too many connection failures" in results(run.id)["flaky"].message

    # Runs read their devices' breakers in one statement at the start (a snapshot).
    flaky = db.session.scalar(select(Device.id).where(Device.name == "flaky"))
    others = list(db.session.scalars(select(Device.id).where(Device.name != "flaky")))
    assert flaky is not None and others
    states = dispatch.circuit_states([flaky, *others])
    assert list(states) == [flaky] and states[flaky][0] == 2 and states[flaky][1] is not None
    connector = dispatch.make_connector(app, [flaky, *others])
    target = DeviceTarget(id=flaky, name="flaky", host="127.0.0.1", port=closed_port,
                          platform="cisco_ios", credentials=(object(),))  # fmt: skip
    with pytest.raises(dispatch.CircuitOpen):
        connector(target)


def test_no_credentials_and_resolver_failure(app, fleet, lab_config, app_factory):
    inventory.create_device(
        name="orphan",
        host="127.0.0.1",
        port=22,
        platform="cisco_ios",
        tags=["orphans"],
        actor="test",
    )
    run = run_job(app, backup_job("orphans", tags=("orphans",)))
    assert run.status == "COMPLETED_NO_CREDENTIALS"
    assert run.metrics == {"resolved": 0, "total": 1, "percentage": 0.0}
    assert results(run.id)["orphan"].status == "no_credentials"

    # Another process with another encryption key cannot read the stored secrets.
    from cryptography.fernet import Fernet

    other = app_factory(
        {
            **lab_config,
            "ROOKERY_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "ROOKERY_INSTANCE": lab_config["ROOKERY_INSTANCE"] + "-other",
        }
    )
    with other.app_context():
        run = run_job(other, backup_job("keyless"))
        assert run.status == "FAILED_CREDENTIAL_RESOLUTION"
        assert "Cannot decrypt credential" in run.error
        line = db.session.execute(
            text(
                "SELECT meta FROM job_logs WHERE log_type = 'runner' AND level = 'error' "
                "ORDER BY id DESC LIMIT 1"
            )
        ).scalar()
        assert line["error_type"] == "CREDENTIAL"


def test_mixed_credentials_give_resolution_metrics(app, fleet):
    inventory.create_device(
        name="orphan", host="127.0.0.1", port=22, platform="cisco_ios", tags=["lab"], actor="test"
    )
    run = run_job(app, backup_job())
    assert run.status == "COMPLETED_PARTIAL_FAILURE"
    assert run.metrics == {"resolved": 5, "total": 6, "percentage": 83.3}
    messages = db.session.scalars(
        text("SELECT message FROM job_logs WHERE run_id = :id AND log_type = 'runner' ORDER BY id"),
        {"id": run.id},
    ).all()
    assert "Resolving credentials for 6 device(s)" in messages
    assert any(
        m.startswith("Handing off 5 device(s) with credentials to dispatcher") for m in messages
    )


def test_reachability_needs_no_credentials(app, fleet, closed_port):
    inventory.create_device(
        name="gone",
        host="127.0.0.1",
        port=closed_port,
        platform="cisco_ios",
        tags=["probe"],
        actor="test",
    )
    inventory.create_device(
        name="up",
        host="127.0.0.1",
        port=fleet.port_of(fleet.devices[0].name),
        platform="cisco_ios",
        tags=["probe"],
        actor="test",
    )
    job = jobs.create_job(name="ping", job_type="reachability", target_tags=["probe"], actor="test")
    run = run_job(app, job)
    by_device = results(run.id)
    assert run.status == "COMPLETED_PARTIAL_FAILURE"
    assert by_device["up"].status == "success" and "answered" in by_device["up"].message
    assert by_device["gone"].status == "failed"
    assert "refused" in by_device["gone"].message
    assert run.metrics is None, "no credential resolution for reachability"


def test_run_commands_stores_output(app, fleet):
    ios = fleet.devices_of("cisco_ios")[0]
    job = jobs.create_job(
        name="show",
        job_type="run_commands",
        target_tags=[f"dev-{ios.name}"],
        params={"commands": "show version\nshow clock"},
        actor="test",
    )
    run = run_job(app, job)
    result = results(run.id)[ios.name]
    assert run.status == "COMPLETED_SUCCESS", result.message
    assert f"{ios.name}# show version" in result.output
    assert result.data["commands"] == ["show version", "show clock"]


def test_custom_job_connects_through_device_connect(app, fleet):
    job = jobs.create_job(name="custom", job_type="show_version", target_tags=["lab"], actor="test")
    run = run_job(app, job)
    assert run.status == "COMPLETED_SUCCESS", results(run.id)
    assert all(r.output and r.credential_name for r in results(run.id).values())


def test_no_password_anywhere(app, fleet, database_url, tmp_path):
    credentials.create_credential(
        "everyone-wrong", "netops", WRONG_PASSWORD, priority=10, tags=["lab"], actor="test"
    )
    run_job(app, backup_job())
    secrets = [WRONG_PASSWORD] + [d.password for d in fleet.devices]
    dump = subprocess.run(
        ["pg_dump", "--data-only", database_url], capture_output=True, text=True, check=False
    )
    if dump.returncode != 0:  # no pg_dump of a matching version: dump every table as text
        tables = db.session.scalars(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).all()
        dump_text = "\n".join(
            str(db.session.execute(text(f'SELECT * FROM "{t}"')).all()) for t in tables
        )
    else:
        dump_text = dump.stdout
    repo = repo_of(app)
    history = repo.git.log("-p", "--all")
    assert len(dump_text) > 1000 and "config_backup" in dump_text
    for secret in secrets:
        assert secret not in dump_text, "a password is stored in clear"
        assert secret not in history, "a password reached git"
    logs = "\n".join(
        Path(p).read_text(errors="replace") for p in tmp_path.rglob("*.log") if p.is_file()
    )
    for secret in secrets:
        assert secret not in logs


# ------------------------------------------------------------ keep what succeeded


def test_a_hung_device_does_not_discard_the_healthy_backups(app, fleet):
    """Issue 12.5: the run times out on one hung device; the others are committed."""
    app.config["ROOKERY_SSH_READ_TIMEOUT"] = 120  # only the run's timeout stops the hang
    hung = fleet.devices[1]
    fleet.set_hanging(hung.name)
    job = jobs.create_job(
        name="nightly",
        job_type="config_backup",
        target_tags=["lab"],
        no_overlap=False,
        timeout_seconds=12,
        actor="test",
    )
    run = run_job(app, job)
    assert run.status == "TIMEOUT", run.message
    repo = repo_of(app)
    good = sorted(d.name for d in fleet.devices if d.name != hung.name)
    assert sorted(p.path for p in repo.head.commit.tree.traverse()) == [f"{n}.cfg" for n in good]
    assert run.result["commit"] == repo.head.commit.hexsha
    assert f"{len(good)} device(s) finished" in run.message
    by_device = results(run.id)
    assert by_device[hung.name].status == "timeout"
    assert all(by_device[n].commit_sha == repo.head.commit.hexsha for n in good)


def test_a_failing_push_is_a_warning_and_is_retried(app, fleet, tmp_path):
    """Issue 12.6: the backup succeeds, the commit is recorded, /health warns, and the
    push goes through once the remote accepts it again."""
    from app import config_store

    remote = tmp_path / "remote.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'remote: refusing everything' >&2\nexit 1\n")
    hook.chmod(0o755)
    app.config["ROOKERY_CONFIG_REMOTE"] = str(remote)

    run = run_job(app, backup_job())
    assert run.status == "COMPLETED_SUCCESS", run.message
    head = repo_of(app).head.commit.hexsha
    assert run.result["commit"] == head
    assert "push to the remote failed" in run.message
    assert "git push to" in run.result["push_error"]
    assert all(r.commit_sha == head for r in results(run.id).values())
    health = app.test_client().get("/health")
    assert health.status_code == 200
    store_state = health.get_json()["config_store"]
    assert (store_state["push"], store_state["remote"]) == ("failing", str(remote))
    assert store_state["since"] and "git push to" in store_state["error"]

    assert config_store.retry_failed_push(app, db.session) is not None, "still refused"
    hook.unlink()
    assert config_store.retry_failed_push(app, db.session) is None
    assert git.Repo(remote).commit("main").hexsha == head
    assert app.test_client().get("/health").get_json()["config_store"]["push"] == "ok"
