"""A worker's app: no pages, no JSON API, no alembic, and none of their imports (memory
per worker); the schema check it does instead of alembic's agrees with alembic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app import create_app, registry

REPO = Path(__file__).resolve().parents[2]

#: what only the web side needs; a worker process must not import it
WEB_ONLY = ("pydantic", "spectree", "app.api", "app.views.runs", "app.views.auth", "flask_wtf")
#: what only migrating needs (`rookery db`, `rookery run`); a worker checks the schema
#: without it (database.schema_state)
MIGRATIONS_ONLY = ("alembic", "flask_migrate", "mako")


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
    """`rookery worker` builds its app with web=False and checks the schema without alembic
    (it stops at the unreachable database, in that check)."""
    unwanted = list(WEB_ONLY + MIGRATIONS_ONLY)
    probe = (
        "import json, runpy, sys\n"
        "sys.argv = ['rookery', 'worker']\n"
        "try:\n"
        "    runpy.run_module('app.cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {unwanted!r} if m in sys.modules]))\n"
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


def test_revision_heads_agree_with_alembic() -> None:
    from alembic.script import ScriptDirectory

    from app import database, migrations_dir

    script = ScriptDirectory(str(migrations_dir()))
    assert database.revision_heads(migrations_dir() / "versions") == sorted(script.get_heads())


def test_revision_heads_of_branches_and_a_merge(tmp_path: Path) -> None:
    from app import database

    scripts = {
        "a.py": 'revision = "a"\ndown_revision = None\n',
        "b.py": 'revision: str = "b"\ndown_revision: str | None = "a"\n',
        "c.py": '"""c"""\nrevision = "c"\ndown_revision = "a"\n',
        "__init__.py": "",
        "notes.txt": 'revision = "x"\n',
    }
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
    assert database.revision_heads(tmp_path) == ["b", "c"]  # two branches
    (tmp_path / "d.py").write_text('revision = "d"\ndown_revision = ("b", "c")\n')
    assert database.revision_heads(tmp_path) == ["d"]  # merged
