"""The job form as a network engineer fills it: no schedule unless picked, the next fire
times in the chosen zone as one types, friendly cron errors, a live count of the devices
the targets match, and no device job saved without targets or with a typo tag."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Job
from app.services import inventory
from tests.conftest import csrf_token


def _login(auth) -> None:
    auth.create("olga", "operator-pw-1", "operator")
    auth.login("olga", "operator-pw-1")


def test_a_backup_job_has_no_schedule_until_one_is_picked(app, client, auth):
    _login(auth)
    page = client.get("/jobs/new?job_type=config_backup").get_data(as_text=True)
    assert '<option value="none" selected>No schedule</option>' in page
    assert "Suggested for this job type: cron 0 2 * * * (UTC)" in page
    assert 'id="next-fire-times"' not in page


def test_next_fire_times_follow_the_schedule_in_its_zone(app, client, auth):
    _login(auth)
    tokyo = client.get(
        "/jobs/schedule-preview?schedule_kind=cron&cron=0+2+*+*+*&timezone=Asia/Tokyo"
    ).get_data(as_text=True)
    assert "Next runs (Asia/Tokyo):" in tokyo
    assert tokyo.count("02:00 Asia/Tokyo</time>") == 3
    assert tokyo.count("(17:00 UTC)") == 3
    every = client.get("/jobs/schedule-preview?schedule_kind=interval&interval_minutes=15")
    assert every.get_data(as_text=True).count("<li>") == 3
    bad = client.get("/jobs/schedule-preview?schedule_kind=cron&cron=61+*+*+*+*").get_data(
        as_text=True
    )
    assert "the minute must be 0 to 59" in bad and 'id="schedule-problem"' in bad
    zone = client.get("/jobs/schedule-preview?schedule_kind=cron&cron=0+2+*+*+*&timezone=Mars")
    assert "Unknown time zone" in zone.get_data(as_text=True)
    assert client.get("/jobs/schedule-preview?schedule_kind=none").status_code == 200


def test_targets_preview_counts_devices_and_suggests_close_names(app, client, auth):
    with app.app_context():
        for name in ("r1", "r2"):
            inventory.create_device(
                name=name, host="192.0.2.1", platform="cisco_ios", tags=["demo"], actor="t"
            )
    _login(auth)
    page = client.get("/jobs/targets-preview?target_tags=demo").get_data(as_text=True)
    assert "2 devices match now." in page
    typo = client.get("/jobs/targets-preview?target_tags=demoo&target_devices=r1,r3")
    text = typo.get_data(as_text=True)
    assert "1 device matches now." in text
    assert "No tag named demoo (did you mean demo?)" in text
    assert "No device named r3</div>" in text  # nothing close to suggest


def test_a_device_job_needs_real_targets_to_be_saved(app, client, auth):
    with app.app_context():
        inventory.create_device(
            name="r1", host="192.0.2.1", platform="cisco_ios", tags=["demo"], actor="t"
        )
    _login(auth)
    form = {
        "csrf_token": csrf_token(client, "/jobs/new?job_type=config_backup"),
        "job_type": "config_backup",
        "name": "nightly",
        "priority": "normal",
        "schedule_kind": "none",
        "timezone": "UTC",
        "enabled": ["0", "1"],
    }
    empty = client.post("/jobs/new", data=form)
    assert empty.status_code == 422
    assert "Give device tags or device names." in empty.get_data(as_text=True)
    typo = client.post("/jobs/new", data={**form, "target_tags": "demoo"})
    assert typo.status_code == 422
    assert "No tag named &#39;demoo&#39; (did you mean &#39;demo&#39;?)" in typo.get_data(
        as_text=True
    )
    cron = client.post(
        "/jobs/new",
        data={**form, "target_tags": "demo", "schedule_kind": "cron", "cron": "0 25 * * *"},
    )
    assert cron.status_code == 422
    assert "the hour must be 0 to 23" in cron.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(Job.id)) is None
    saved = client.post("/jobs/new", data={**form, "target_tags": "demo"})
    assert saved.status_code == 302
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "<dt>Priority</dt><dd>normal</dd>" in page
