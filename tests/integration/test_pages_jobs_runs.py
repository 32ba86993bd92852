"""The dashboard, jobs and runs pages through the Flask test client, on a real PostgreSQL."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select, text

from app.extensions import db
from app.models import Job, JobLog, JobRun, Schedule
from app.services import runs
from tests.conftest import csrf_token
from tests.integration.helpers import drain, make_job, reload

SECRET = "s3cret-token-value"


@pytest.fixture
def operator(app, auth):
    auth.create("olga", "operator-pw-1", "operator")
    auth.login("olga", "operator-pw-1")
    return auth


@pytest.fixture
def viewer(app, auth):
    auth.create("vic", "viewer-pw-1", "viewer")
    auth.login("vic", "viewer-pw-1")
    return auth


def _post(client, path, data, page=None):
    token = csrf_token(client, page or path)
    return client.post(path, data={**data, "csrf_token": token})


def _writer_form(**overrides):
    form = {
        "job_type": "writer",
        "name": "nightly writer",
        "description": "writes a tag",
        "labels": "core, nightly",
        "p_tag": "t1",
        "p_mode": "ok",
        "p_token": SECRET,
        "priority": "high",
        "max_retries": "2",
        "schedule_kind": "none",
        "timezone": "UTC",
        "no_overlap": ["0"],
        "enabled": ["0", "1"],
    }
    form.update(overrides)
    return form


def test_dashboard_renders_empty_and_with_runs(app, client, operator):
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="runs-chart"' in page.text
    assert "No run finished in this window." in page.text
    with app.app_context():
        job = make_job("dash", params={"mode": "fail", "tag": "a"})
        runs.start_run(job, triggered_by="test")
        runs.start_run(make_job("dash2", params={"tag": "b"}), triggered_by="test")
        drain(app)
    page = client.get("/?days=1")
    assert page.status_code == 200
    assert re.search(r'id="stat-finished">2<', page.text)
    assert re.search(r'id="stat-success-rate">50%<', page.text)
    assert "Failed" in page.text and "Success" in page.text
    assert "<rect" in page.text
    # The window selector asks for the body alone; an unknown window falls back to 7 days.
    partial = client.get("/?days=9999", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert "<html" not in partial.text and 'id="stats"' in partial.text


def test_new_job_form_renders_the_params_of_its_type(client, operator):
    choose = client.get("/jobs/new")
    assert 'id="choose-writer"' in choose.text and 'id="choose-noop"' in choose.text
    form = client.get("/jobs/new?job_type=writer")
    assert form.status_code == 200
    assert 'name="p_tag"' in form.text and 'value="written"' in form.text  # the default
    assert re.search(r'<select id="f-p_mode" name="p_mode"', form.text)
    assert re.search(r'type="password" id="f-p_token" name="p_token"', form.text)
    # A device job offers targets; a global one does not.
    assert 'name="target_tags"' not in form.text
    assert 'name="target_tags"' in client.get("/jobs/new?job_type=devjob").text


def test_create_job_errors_sit_next_to_their_fields_and_nothing_is_saved(app, client, operator):
    answer = _post(
        client,
        "/jobs/new",
        _writer_form(name="", p_mode="explode", max_retries="many", timeout_seconds="-3"),
        page="/jobs/new?job_type=writer",
    )
    assert answer.status_code == 422
    html = answer.text
    assert 'id="error-name"' in html
    assert 'id="error-p_mode"' in html and "Choose one of" in html
    assert 'id="error-max_retries"' in html and 'id="error-timeout_seconds"' in html
    assert SECRET not in html  # the secret typed is not echoed back
    assert 'value="writes a tag"' not in html or "writes a tag" in html  # input kept
    assert "writes a tag" in html
    bad_schedule = _post(
        client,
        "/jobs/new",
        _writer_form(schedule_kind="cron", cron="not a cron"),
        page="/jobs/new?job_type=writer",
    )
    assert bad_schedule.status_code == 422
    assert 'id="error-cron"' in bad_schedule.text
    unknown_device = _post(
        client,
        "/jobs/new",
        {**_writer_form(job_type="devjob"), "target_devices": "nope-1"},
        page="/jobs/new?job_type=devjob",
    )
    assert unknown_device.status_code == 422
    assert 'id="error-target_devices"' in unknown_device.text
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Job)) == 0
        assert db.session.scalar(select(func.count()).select_from(Schedule)) == 0


def test_create_edit_run_and_delete_a_job(app, client, operator):
    created = _post(
        client,
        "/jobs/new",
        _writer_form(schedule_kind="interval", interval_minutes="60"),
        page="/jobs/new?job_type=writer",
    )
    assert created.status_code == 302, created.text
    job_url = created.headers["Location"]
    page = client.get(job_url)
    assert "nightly writer" in page.text and "every hour" in page.text.lower()
    assert SECRET not in page.text  # shown redacted
    with app.app_context():
        job = db.session.scalar(select(Job))
        assert job.labels == ["core", "nightly"] and job.priority == 10 and job.max_retries == 2
        job_id = job.id
    # A double submit of the same form is refused by name, not saved twice.
    again = _post(client, "/jobs/new", _writer_form(), page="/jobs/new?job_type=writer")
    assert again.status_code == 422 and 'id="error-name"' in again.text
    # Editing: the secret field comes back empty and an empty one keeps the stored value.
    edit = client.get(f"/jobs/{job_id}/edit")
    assert SECRET not in edit.text
    saved = _post(
        client,
        f"/jobs/{job_id}/edit",
        _writer_form(name="renamed writer", p_token="", p_tag="t2", schedule_kind="none"),
    )
    assert saved.status_code == 302
    with app.app_context():
        from app import crypto

        job = db.session.get(Job, job_id)
        params = crypto.reveal_params(job.params)
        assert job.name == "renamed writer" and params["tag"] == "t2"
        assert params["token"] == SECRET
        assert db.session.scalar(select(func.count()).select_from(Schedule)) == 0
    # Run now queues a run and shows it.
    started = _post(client, f"/jobs/{job_id}/run", {}, page=f"/jobs/{job_id}")
    assert started.status_code == 302 and "/runs/" in started.headers["Location"]
    run_page = client.get(started.headers["Location"])
    assert "Queued" in run_page.text and 'sse-connect="/runs/' in run_page.text
    # Deleting while the run is queued is refused; after it ran, allowed, history kept.
    refused = _post(client, f"/jobs/{job_id}/delete", {}, page=f"/jobs/{job_id}")
    assert refused.status_code == 302
    assert "cancel it first" in client.get(refused.headers["Location"]).text
    drain(app)
    deleted = _post(client, f"/jobs/{job_id}/delete", {}, page=f"/jobs/{job_id}")
    assert deleted.headers["Location"].endswith("/jobs")
    assert "renamed writer" in client.get("/runs").text


def test_disable_and_enable_a_job(app, client, operator):
    with app.app_context():
        job_id = make_job("toggle").id
    _post(client, f"/jobs/{job_id}/enabled", {"enabled": "0"}, page=f"/jobs/{job_id}")
    page = client.get(f"/jobs/{job_id}")
    assert "Disabled" in page.text and 'id="run-now"' not in page.text
    refused = _post(client, f"/jobs/{job_id}/run", {}, page=f"/jobs/{job_id}")
    assert "disabled" in client.get(refused.headers["Location"]).text
    _post(client, f"/jobs/{job_id}/enabled", {"enabled": "1"}, page=f"/jobs/{job_id}")
    assert 'id="run-now"' in client.get(f"/jobs/{job_id}").text


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/new",
        "/jobs/1/edit",
        "/jobs/1/run",
        "/jobs/1/enabled",
        "/jobs/1/delete",
        "/runs/1/cancel",
        "/runs/1/relaunch",
    ],
)
def test_a_viewer_cannot_change_jobs_or_runs(app, client, viewer, path):
    with app.app_context():
        job = make_job("guarded")
        assert job.id == 1
        runs.start_run(job, triggered_by="test")
    token = csrf_token(client, "/jobs")
    assert client.post(path, data={"csrf_token": token}).status_code == 403
    with app.app_context():
        assert reload(1).status == "QUEUED"
        runs.cancel_run(1, actor="an operator")


def test_a_viewer_sees_no_buttons_that_change_things(app, client, viewer):
    with app.app_context():
        job_id = make_job("seen").id
        run_id = runs.start_run(db.session.get(Job, job_id), triggered_by="test").id
    assert 'id="new-job"' not in client.get("/jobs").text
    detail = client.get(f"/jobs/{job_id}").text
    assert 'id="run-now"' not in detail and 'id="edit-job"' not in detail
    assert 'id="cancel-run"' not in client.get(f"/runs/{run_id}").text
    assert client.get("/jobs/new").status_code == 403
    with app.app_context():
        runs.cancel_run(run_id, actor="an operator")


def test_unknown_ids_are_404_pages(client, operator):
    for path in ("/jobs/999", "/jobs/999/edit", "/runs/999", "/runs/999/stream"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "Traceback" not in answer.text


def test_runs_list_filters_and_pages_by_keyset(app, client, viewer):
    with app.app_context():
        job = make_job("many")
        db.session.execute(
            text(
                "INSERT INTO job_runs (job_id, job_name, job_type, params, status, priority,"
                " attempt, max_attempts, retry_delay_seconds, retry_max_delay_seconds,"
                " created_at, progress_done, progress_total, triggered_by, signal_id)"
                " SELECT :job, 'many', 'writer', '{}', CASE WHEN g % 3 = 0 THEN"
                " 'COMPLETED_FAILURE' ELSE 'COMPLETED_SUCCESS' END, 5, 1, 1, 30, 3600,"
                " now() - make_interval(mins => g), 0, 0, 'test', md5(g::text)"
                " FROM generate_series(1, 120) g"
            ),
            {"job": job.id},
        )
        db.session.commit()
    first = client.get("/runs")
    assert first.status_code == 200
    ids = [int(i) for i in re.findall(r'id="run-row-(\d+)"', first.text)]
    assert len(ids) == 50 and ids == sorted(ids, reverse=True)
    older = re.search(r'href="([^"]+)" id="next-page"', first.text).group(1).replace("&amp;", "&")
    second = client.get(older)
    ids2 = [int(i) for i in re.findall(r'id="run-row-(\d+)"', second.text)]
    assert len(ids2) == 50 and max(ids2) < min(ids)
    failed = client.get("/runs?status=COMPLETED_FAILURE")
    assert len(re.findall(r'id="run-row-', failed.text)) == 40
    assert "Success</span>" not in failed.text.split("<tbody")[1]
    assert client.get("/runs?status=NOPE").status_code == 422
    bad_date = client.get("/runs?date=yesterday")
    assert bad_date.status_code == 422 and "YYYY-MM-DD" in bad_date.text
    assert 'id="no-runs"' in client.get("/runs?job_type=noop").text


def test_run_page_shows_results_logs_and_events(app, client, operator):
    from app.services import inventory

    with app.app_context():
        for name in ("sw-good", "sw-bad"):
            inventory.create_device(
                name=name,
                host="127.0.0.1",
                port=22,
                platform="cisco_ios",
                tags=["lab"],
                actor="test",
            )
        job = make_job("visit", job_type="devjob", target_tags=["lab"])
        run_id = runs.start_run(job, triggered_by="test").id
        drain(app)
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    html = page.text
    assert "Partial failure" in html
    assert "sw-good" in html and "sw-bad did not answer" in html
    assert "visiting sw-good" in html
    assert "job.started" in html and "job.completed" in html
    assert 'id="relaunch-failed"' in html
    relaunched = _post(
        client, f"/runs/{run_id}/relaunch", {"failed_only": "1"}, page=f"/runs/{run_id}"
    )
    assert relaunched.status_code == 302
    with app.app_context():
        new_run = db.session.scalar(select(JobRun).order_by(JobRun.id.desc()))
        assert new_run.id != run_id and len(new_run.device_ids) == 1
        assert db.session.scalar(select(func.count()).select_from(JobLog)) > 0
        drain(app)
        assert reload(new_run.id).status == "COMPLETED_FAILURE"


def test_cancel_a_queued_run_from_its_page(app, client, operator):
    with app.app_context():
        run_id = runs.start_run(make_job("c"), triggered_by="test").id
    answer = _post(client, f"/runs/{run_id}/cancel", {}, page=f"/runs/{run_id}")
    assert answer.status_code == 302
    assert "Cancelled" in client.get(f"/runs/{run_id}").text
    again = _post(client, f"/runs/{run_id}/cancel", {}, page=f"/runs/{run_id}")
    assert "nothing to cancel" in client.get(again.headers["Location"]).text


def test_every_status_has_a_badge_with_colour_icon_and_text(app):
    from app.models import RunStatus
    from app.views.common import STATUS_DISPLAY

    css = app.root_path + "/static/rookery.css"
    with open(css) as handle:
        stylesheet = handle.read()
    for status in RunStatus:
        icon, label = STATUS_DISPLAY[status.value]
        assert icon and label
        assert f".badge-{status.value.lower()}" in stylesheet
    assert STATUS_DISPLAY["COMPLETED_NO_CREDENTIALS"][1] == "No credentials found"
    assert STATUS_DISPLAY["FAILED_CREDENTIAL_RESOLUTION"][1] == "Credential error"


def test_jobs_page_renders_thousands_of_jobs_in_pages(app, client, viewer):
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO jobs (name, description, labels, job_type, params, priority,"
                " no_overlap, enabled, created_at, updated_at)"
                " SELECT 'job-' || lpad(g::text, 5, '0'), '', jsonb_build_array('l' || (g % 7)),"
                " 'noop', '{}', 5, false, true, now(), now() FROM generate_series(1, 3000) g"
            )
        )
        db.session.commit()
        job_id = db.session.scalar(select(Job.id).where(Job.name == "job-00002"))
        run_id = runs.start_run(db.session.get(Job, job_id), triggered_by="test").id
    first = client.get("/jobs")
    assert first.status_code == 200
    assert len(re.findall(r'<tr id="job-\d+"', first.text)) == 100
    assert "job-00001" in first.text and "Queued" in first.text
    second = client.get(re.search(r'href="([^"]+)" id="next-page"', first.text).group(1))
    assert "job-00101" in second.text and "job-00001" not in second.text
    labelled = client.get("/jobs?label=l3")
    assert len(re.findall(r'<tr id="job-\d+"', labelled.text)) == 100
    assert "<option selected>l3</option>" in labelled.text
    with app.app_context():
        runs.cancel_run(run_id, actor="an operator")
