"""The README's JSON API examples, run as written against a live server.

The first ``sh`` block of the README's "## JSON API" section runs in bash from the
repository root (its ``rookery token create`` included), with only the server's
address changed; every curl must get a 2xx (``--fail-with-body``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_api_support import LiveApi, serve_api

pytestmark = [pytest.mark.acceptance, pytest.mark.db]

ROOT = Path(__file__).resolve().parents[2]
README_URL = "http://127.0.0.1:5000"


def readme_block() -> str:
    """The first sh block of the JSON API section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## JSON API\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found, "no sh block in the README's JSON API section"
    return found.group(1)


@pytest.fixture
def live(pg_admin: str, template_db: str, tmp_path: Path) -> Iterator[LiveApi]:
    with serve_api(pg_admin, template_db, tmp_path / "instance") as server:
        from app.services import users

        with server.app.app_context():
            users.create_user("admin", "correct-horse-battery", "admin", actor="test")
        yield server


def test_the_readme_block_parses() -> None:
    block = readme_block()
    assert block.count("curl ") >= 10 and README_URL in block
    assert "rookery token create admin" in block


def test_readme_curl_examples_work_as_written(live: LiveApi) -> None:
    assert shutil.which("curl"), "curl is needed to run the README's examples"
    script = readme_block().replace(README_URL, live.base_url)
    prelude = (
        "set -euo pipefail\n"
        # each answer on a line of its own; any 4xx/5xx fails the script
        'curl() { command curl --fail-with-body "$@"; echo; }\n'
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DATABASE_URL" and not key.startswith(("ROOKERY_", "FLASK_"))
    }
    env.update(
        DATABASE_URL=live.database_url,
        ROOKERY_INSTANCE=str(live.instance),
        ROOKERY_LOG_LEVEL="WARNING",
    )
    done = subprocess.run(
        ["bash", "-c", prelude + script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    job_types, device, credential, job, run = answers[:5]
    assert {t["job_type"] for t in job_types["job_types"]} >= {"config_backup", "noop"}
    assert device["id"] == 1 and device["tags"] == ["core"]
    assert credential["id"] == 1 and "password" not in credential
    assert job["id"] == 1 and job["schedules"][0]["expression"] == "0 2 * * *"
    assert run["id"] == 1 and run["device_ids"] == [1]
    assert any(a.get("status") == "CANCELLED" for a in answers if isinstance(a, dict))
    assert "s3cret" not in done.stdout
