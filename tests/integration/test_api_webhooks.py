"""The API's per-job webhooks: a generated secret shown once, never afterwards."""

from __future__ import annotations

import pytest

from tests.integration.test_api_support import Api, error, make_tokens, ok

CHOSEN = "a-chosen-secret-of-some-length"


@pytest.fixture
def engine_config(engine_config):
    """These webhooks point at 127.0.0.1: an admin allowed it."""
    return {**engine_config, "ROOKERY_WEBHOOK_ALLOW": "127.0.0.1/32"}


@pytest.fixture
def api(app, client) -> Api:
    return Api(client=client, tokens=make_tokens(app))


@pytest.fixture
def job_id(api: Api) -> int:
    return ok(api.post("/api/v1/jobs", json={"name": "j", "job_type": "writer"}), 201)["id"]


def test_webhooks_of_a_job(api: Api, job_id: int) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "events": ["failure", "timeout"]}
    error(api.post(f"/api/v1/jobs/{job_id}/webhooks", json=body, as_="viewer"), 403)
    created = ok(api.post(f"/api/v1/jobs/{job_id}/webhooks", json=body, as_="operator"), 201)
    generated = created["secret"]
    assert created["id"] and created["job_id"] == job_id and len(generated) >= 16
    assert created["events"] == ["failure", "timeout"] and created["enabled"] is True

    listed = api.get(f"/api/v1/jobs/{job_id}/webhooks", as_="viewer")
    assert [w["id"] for w in ok(listed)["items"]] == [created["id"]]
    one = api.get(f"/api/v1/webhooks/{created['id']}", as_="viewer")
    assert "secret" not in ok(one)
    for answer in (listed, one):
        assert generated not in answer.get_data(as_text=True)

    chosen = ok(api.post(f"/api/v1/jobs/{job_id}/webhooks", json={**body, "secret": CHOSEN}), 201)
    assert chosen["secret"] is None

    changed = ok(
        api.patch(
            f"/api/v1/webhooks/{created['id']}",
            json={"events": ["config_changed"], "enabled": False},
        )
    )
    assert changed["events"] == ["config_changed"] and changed["enabled"] is False
    rotated = ok(api.post(f"/api/v1/webhooks/{created['id']}/secret", json={}))
    assert rotated["secret"] and rotated["secret"] != generated
    assert ok(api.post(f"/api/v1/webhooks/{created['id']}/secret", json={"secret": CHOSEN})) == {
        "secret": None
    }
    assert ok(api.get("/api/v1/audit")) and CHOSEN not in api.get("/api/v1/audit").get_data(
        as_text=True
    )

    error(api.delete(f"/api/v1/webhooks/{created['id']}", as_="viewer"), 403)
    assert api.delete(f"/api/v1/webhooks/{created['id']}", as_="operator").status_code == 204
    error(api.get(f"/api/v1/webhooks/{created['id']}"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    (
        ({"url": "ftp://x/", "events": ["failure"]}, "url"),
        ({"url": "http://u:p@127.0.0.1/", "events": ["failure"]}, "url"),
        ({"url": "http://127.0.0.1/", "events": []}, "events"),
        ({"url": "http://127.0.0.1/", "events": ["sometimes"]}, "events"),
        ({"url": "http://127.0.0.1/", "events": ["failure"], "secret": "short"}, "secret"),
    ),
)
def test_bad_webhooks_are_422(api: Api, job_id: int, body, field) -> None:
    found = error(api.post(f"/api/v1/jobs/{job_id}/webhooks", json=body), 422)
    assert any(key.startswith(field) for key in found["fields"]), found
    assert ok(api.get(f"/api/v1/jobs/{job_id}/webhooks"))["items"] == []


def test_webhooks_of_an_unknown_job_are_404(api: Api) -> None:
    error(api.get("/api/v1/jobs/4242/webhooks"), 404)
    body = {"url": "http://127.0.0.1/", "events": ["failure"]}
    error(api.post("/api/v1/jobs/4242/webhooks", json=body), 404)
