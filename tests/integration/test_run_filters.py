"""Finding runs: by job, device, trigger and "any failure", in the API and on the page;
triggers in words, with a link to the run a relaunch repeated."""

from __future__ import annotations

from app import logs
from app.extensions import db
from app.services import inventory, runs
from tests.integration.helpers import drain, make_job
from tests.integration.test_api_support import Api, error, make_tokens, ok


def _device(name: str, *tags: str) -> None:
    inventory.create_device(
        actor="test", name=name, host="192.0.2.1", platform="cisco_ios", tags=list(tags)
    )


def _runs(app, ctx):
    """Three runs: devjob on good+bad (partial failure, by a user), devjob on good only
    (success, by the API), and a relaunch of the first's failed device."""
    _device("good-1", "lab")
    _device("bad-1", "lab")
    _device("good-2", "solo")
    mixed = runs.start_run(
        make_job("mixed", "devjob", target_tags=["lab"]), triggered_by="user:ada"
    )
    clean = runs.start_run(
        make_job("clean", "devjob", target_tags=["solo"]), triggered_by="api:bot"
    )
    drain(app)
    again = runs.relaunch_run(mixed.id, failed_only=True, actor="test")
    drain(app)
    return mixed.id, clean.id, again.id


def ids(body) -> list[int]:
    return [r["id"] for r in body["items"]]


def test_api_filters_runs_by_device_trigger_job_and_any_failure(app, ctx, client):
    mixed, clean, again = _runs(app, ctx)
    api = Api(client=client, tokens=make_tokens(app))
    get = lambda query: ok(api.get(f"/api/v1/runs?{query}", as_="viewer"))  # noqa: E731
    assert ids(get("device=bad-1")) == [again, mixed]
    assert ids(get("device=good-2")) == [clean]
    assert ids(get("trigger=relaunch")) == [again]
    assert ids(get("trigger=api")) == [clean]
    assert ids(get("trigger=user&device=good-1")) == [mixed]
    assert ids(get("status=any_failure")) == [again, mixed]
    assert clean not in ids(get("status=any_failure"))
    job_id = runs.get_run(clean).job_id
    assert ids(get(f"job_id={job_id}")) == [clean]
    assert error(api.get("/api/v1/runs?device=nope", as_="viewer"), 422)["fields"]["device"]
    refused = error(api.get("/api/v1/runs?trigger=moon", as_="viewer"), 422)
    assert "schedule" in refused["fields"]["trigger"]


def test_runs_page_filters_and_trigger_links(app, ctx, client, auth):
    mixed, clean, again = _runs(app, ctx)
    auth.create("vera", "viewer-pw-1", "viewer")
    auth.login("vera", "viewer-pw-1")
    page = client.get("/runs?status=any_failure&device=bad-1").get_data(as_text=True)
    assert f'id="run-row-{mixed}"' in page and f'id="run-row-{again}"' in page
    assert f'id="run-row-{clean}"' not in page
    assert '<option value="any_failure" selected>Any failure</option>' in page
    assert f'relaunch of <a href="/runs/{mixed}">#{mixed}</a>' in page
    by_trigger = client.get("/runs?trigger=api").get_data(as_text=True)
    assert f'id="run-row-{clean}"' in by_trigger and f'id="run-row-{mixed}"' not in by_trigger
    assert 'bot <span class="muted">(API)</span>' in by_trigger
    unknown = client.get("/runs?device=nope")
    assert unknown.status_code == 422 and 'id="error-device"' in unknown.get_data(as_text=True)
    detail = client.get(f"/runs/{again}").get_data(as_text=True)
    assert f'<dd id="run-trigger">relaunch of <a href="/runs/{mixed}">#{mixed}</a></dd>' in detail


def test_run_page_lists_every_targeted_device_until_its_result_arrives(app, ctx, client, auth):
    for name in ("good-1", "bad-1", "good-2"):
        _device(name, "lab")
    inventory.create_device(
        actor="test",
        name="off",
        host="192.0.2.9",
        platform="cisco_ios",
        tags=["lab"],
        enabled=False,
    )
    run = runs.start_run(make_job("all", "devjob", target_tags=["lab"]), triggered_by="test")
    auth.create("vera", "viewer-pw-1", "viewer")
    auth.login("vera", "viewer-pw-1")
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    device_ids = {d.name: d.id for d in map(inventory.get_by_name, ("good-1", "bad-1", "good-2"))}
    for device_id in device_ids.values():
        assert f'id="waiting-device-{device_id}"' in page
    assert 'id="waiting-device-' + str(inventory.get_by_name("off").id) not in page  # disabled
    assert page.count('data-state="waiting"') == 3 and 'data-state="working"' not in page
    # A device's first log line of this attempt: it shows as working from then on.
    logs.write(
        level="debug",
        log_type="job",
        source="worker.job.devjob",
        message="bad-1: started",
        run_id=run.id,
        device_id=device_ids["bad-1"],
    )
    db.session.commit()
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    working = page.index(f'id="waiting-device-{device_ids["bad-1"]}"')
    assert page[working:].split("</tr>")[0].count('data-state="working"') == 1
    assert page.count('data-state="waiting"') == 2 and "working since" in page
    drain(app)
    page = client.get(f"/runs/{run.id}").get_data(as_text=True)
    assert "waiting-device-" not in page
    for device_id in device_ids.values():
        assert f'data-device-id="{device_id}"' in page
