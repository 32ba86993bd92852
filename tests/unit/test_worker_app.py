"""A worker's app: no pages, no JSON API, and none of their imports (memory per worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app import create_app, registry

REPO = Path(__file__).resolve().parents[2]

#: what only the web side needs; a worker process must not import it
WEB_ONLY = ("pydantic", "spectree", "app.api", "app.views.runs", "app.views.auth")


def _config(tmp_path: Path) -> dict[str, str]:
    # create_app does not connect: an address nothing listens on is enough.
    return {
        "DATABASE_URL": "postgresql://rookery@127.0.0.1:9/rookery",
        "ROOKERY_INSTANCE": str(tmp_path / "instance"),
    }


def test_worker_app_has_the_registry_but_no_blueprints(tmp_path: Path) -> None:
    worker = create_app(_config(tmp_path), web=False)
    assert worker.blueprints == {}
    with worker.app_context():
        assert "config_backup" in registry.current().types
    web = create_app(_config(tmp_path))
    assert {"api", "auth", "runs"} <= set(web.blueprints)


def test_rookery_worker_imports_nothing_web_only(tmp_path: Path) -> None:
    """`rookery worker` builds its app with web=False (it stops at the unreachable database)."""
    probe = (
        "import json, runpy, sys\n"
        "sys.argv = ['rookery', 'worker']\n"
        "try:\n"
        "    runpy.run_module('app.cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {list(WEB_ONLY)!r} if m in sys.modules]))\n"
    )
    env = {**os.environ, **_config(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=str(REPO),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "PostgreSQL is unavailable" in done.stderr, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
