"""schemathesis against the live API: no 5xx, every answer matches the OpenAPI document.

One werkzeug server on 127.0.0.1 (a thread of this process) serves a fresh database
with a little of everything (a device, a credential, a job, a schedule, a run, a
webhook), so generated ids that hit find something. Each operation gets a bounded
number of generated requests, sent with an admin token.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.acceptance.test_api_support import serve_api

pytestmark = [pytest.mark.acceptance, pytest.mark.db]

#: generated requests per operation (the whole run stays well under two minutes)
EXAMPLES = int(os.environ.get("ROOKERY_SCHEMATHESIS_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]


def _seed(app: Any) -> str:
    """A little of everything; returns an admin token."""
    from app.services import credentials, inventory, jobs, runs, schedules, tokens, users
    from app.services import webhooks as webhook_service

    with app.app_context():
        admin = users.create_user("admin", "correct-horse-battery", "admin", actor="test")
        token = tokens.create_token(admin, "schemathesis", actor="test")[1]
        device = inventory.create_device(
            actor="test", tags=["lab"], name="r1", host="192.0.2.1", platform="cisco_ios"
        )
        credentials.create_credential("lab", "u", "p", tags=["lab"], actor="test")
        job = jobs.create_job(
            name="noop", job_type="noop", actor="test", target_device_ids=[device.id]
        )
        schedules.create_schedule(job, kind="interval", interval_minutes=60, actor="test")
        runs.start_run(job, triggered_by="test", actor="test")
        webhook_service.create_webhook(
            job.id, "https://hooks.example.net/", ["failure"], actor="test"
        )
    return token


@pytest.fixture(scope="module")
def live_api(
    pg_admin: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(base URL, admin token) of a live server on its own database, with some of everything."""
    instance = tmp_path_factory.mktemp("schemathesis") / "instance"
    with serve_api(pg_admin, template_db, instance) as server:
        yield server.base_url, _seed(server.app)


def _label(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_matches_its_document(live_api: tuple[str, str], mode: GenerationMode) -> None:
    """Every operation, a bounded number of generated requests each; every failure listed."""
    base_url, token = live_api
    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/stream"):  # server-sent events: never ends
            continue
        tested += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
        )
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            check()
        except Exception as exc:  # every operation's failure, not only the first
            failures.append(f"{_label(operation)}: {exc}")
    assert tested >= 40
    assert not failures, "\n\n".join(failures)
