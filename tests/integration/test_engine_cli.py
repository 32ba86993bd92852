"""`rookery new-job` and `rookery job run` on a real database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app import registry
from app.cli import cli
from app.extensions import db
from app.models import Event, JobRun
from app.services import jobs
from tests.integration.helpers import drain


def test_new_job_writes_a_module_the_registry_loads(runner, tmp_path):
    folder = tmp_path / "myjobs"
    result = runner.invoke(cli, ["new-job", "port_audit", "--dir", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "port_audit.py").exists()
    found = registry.discover([folder])
    assert "port_audit" in found.types, found.skipped
    again = runner.invoke(cli, ["new-job", "port_audit", "--dir", str(folder)])
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_new_job_refuses_a_bad_name(runner, tmp_path):
    folder = tmp_path / "myjobs"
    result = runner.invoke(cli, ["new-job", "Bad Name", "--dir", str(folder)])
    assert result.exit_code == 1
    assert result.output.startswith("Error:")
    assert not folder.exists()


def test_job_run_now_prints_the_message(runner, app):
    with app.app_context():
        jobs.create_job(name="quick", job_type="noop", params={"message": "all good"}, actor="test")
    result = runner.invoke(cli, ["job", "run", "quick", "--now"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "all good"
    with app.app_context():
        run = db.session.scalar(select(JobRun))
        assert (run.status, run.triggered_by) == ("COMPLETED_SUCCESS", "run_now")


def test_job_run_queues_a_run(runner, app):
    with app.app_context():
        jobs.create_job(name="later", job_type="noop", actor="test")
    result = runner.invoke(cli, ["job", "run", "later", "--json"])
    assert result.exit_code == 0, result.output
    assert '"status": "QUEUED"' in result.output
    with app.app_context():
        assert db.session.scalar(select(JobRun.triggered_by)) == "cli"
        drain(app)
        assert db.session.scalar(select(JobRun.status)) == "COMPLETED_SUCCESS"


def test_job_run_unknown_job_is_one_error_line(runner):
    result = runner.invoke(cli, ["job", "run", "nope"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: No job named 'nope'."


def test_invalid_params_are_refused_with_field_messages(app):
    import pytest

    from app.errors import ValidationError

    with app.app_context(), pytest.raises(ValidationError) as info:
        jobs.create_job(name="bad", job_type="noop", params={"seconds": "soon"}, actor="t")
    assert "seconds" in info.value.fields
    with app.app_context():
        assert db.session.scalar(select(JobRun)) is None


def test_noop_reports_progress(app):
    from app.services import runs

    with app.app_context():
        assert runs.run_now("noop", seconds=1) == "waited 1s"
        run = db.session.scalar(select(JobRun))
        assert run.progress_total > 1 and run.progress_done == run.progress_total
        progress = db.session.scalars(select(Event).where(Event.type == "job.progress")).all()
        assert progress and progress[-1].data["done"] == progress[-1].data["total"]


def test_demo_loads_emulated_devices_that_back_up(runner, app, monkeypatch):
    """`rookery demo` puts live devices in the inventory; its backup job works on them."""
    from app import demo_lab
    from app.models import Device, JobRun
    from app.services import runs
    from tests.integration.helpers import drain

    def serve_once(devices, announce, **options):
        served_options.update(options)
        with demo_lab.DeviceLab(devices) as lab:
            announce(lab)
            run = runs.start_run(jobs.get_job_by_name("Demo backup"), triggered_by="test")
            drain(app, concurrency=2)
            db.session.expire_all()
            served.append(db.session.get(JobRun, run.id))

    served: list = []
    served_options: dict = {}
    monkeypatch.setattr(demo_lab, "serve_forever", serve_once)
    result = runner.invoke(cli, ["demo", "--devices", "3", "--drift", "5", "--changeable", "2"])
    assert result.exit_code == 0, result.output
    assert "5 emulated devices are up" in result.output
    assert "The 2 demo-core devices (tag 'demo-core') keep a running config" in result.output
    assert "Every 5 minute(s) one device's configuration changes" in result.output
    assert served_options["drift_minutes"] == 5
    with app.app_context():
        names = sorted(db.session.scalars(select(Device.name)))
        core = db.session.scalar(select(Device).where(Device.name == "demo-core-001"))
        core_tags = sorted(t.name for t in core.tags)
    assert names == [
        "demo-core-001",
        "demo-core-002",
        "demo-eos-002",
        "demo-ios-001",
        "demo-nxos-003",
    ]
    assert core_tags == ["demo", "demo-core", "demo-core-001"]
    assert served[0].status == "COMPLETED_SUCCESS", served[0].message  # the five backed up


def test_demo_without_the_emulator_says_how_to_install_it(runner, monkeypatch):
    """A ./run.sh install has no fakenos (an extra): one clear line, no traceback."""
    import importlib.util

    from app import demo_lab

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fakenos" else real_find_spec(name, *a),
    )
    monkeypatch.setattr(demo_lab, "serve_forever", lambda *a: pytest.fail("must not start"))
    result = runner.invoke(cli, ["demo"])
    assert result.exit_code == 1
    assert "pip install -e '.[demo]'" in result.output
    assert "Traceback" not in result.output
