"""Integration fixtures: test job modules on a temporary ROOKERY_JOBS_PATH, the app with them."""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import pytest

from tests.conftest import make_config

JOB_MODULES = {
    "writer.py": '''
        """Writes a tag row, then succeeds, fails or raises as its params say."""
        from app.jobs import JobLogger

        JOB_META = {
            "job_type": "writer",
            "targets": "none",
            "params": [
                {"name": "tag", "type": "string", "default": "written"},
                {"name": "mode", "type": "choice", "choices": ["ok", "fail", "raise"],
                 "default": "ok"},
                {"name": "token", "type": "secret"},
            ],
        }

        def run(device, job_id, config, db):
            from app.models import Tag
            log = JobLogger(job_id, "writer")
            log.info("writing", {"tag": config["params"]["tag"], "password": "hidden"})
            db.add(Tag(name=f"{config['params']['tag']}-{config['attempt']}"))
            db.flush()
            mode = config["params"]["mode"]
            if mode == "raise":
                raise RuntimeError("boom after writing")
            if mode == "fail":
                return {"success": False, "message": "declined"}
            return {"success": True, "message": "wrote it", "data": {"n": 1},
                    "post_data": {"written": True}}
    ''',
    "devjob.py": '''
        """Touches every device; devices whose name contains 'bad' fail."""
        from app.jobs import JobLogger

        JOB_META = {"job_type": "devjob", "targets": "devices", "needs_credentials": False}

        def run(device, job_id, config, db):
            JobLogger(job_id, "devjob", device.id).info(f"visiting {device.name}")
            if "bad" in device.name:
                raise ConnectionError(f"{device.name} did not answer")
            return f"{device.name} ok ({','.join(device.tags)})"
    ''',
}


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs"
    folder.mkdir()
    for name, source in JOB_MODULES.items():
        (folder / name).write_text(textwrap.dedent(source))
    return folder


@pytest.fixture
def engine_config(database_url, tmp_path, jobs_dir):
    return make_config(
        database_url,
        tmp_path / "instance",
        ROOKERY_JOBS_PATH=str(jobs_dir),
        ROOKERY_RETRY_DELAY_SECONDS=1,
        ROOKERY_DEFAULT_RETRIES=0,
    )


@pytest.fixture
def app(engine_config, app_factory):  # overrides the plain app: test job modules loaded
    return app_factory(engine_config)


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


@pytest.fixture(autouse=True, scope="module")
def _fast_password_hashes():
    """Cheap password hashes for these tests only.

    scrypt costs about 0.15 s per hash here, and most tests hash twice (create a user,
    log in): minutes per suite run. These tests are about who may do what, not about
    the hash's cost; tests/unit/test_passwords.py checks the real one is scrypt.
    """
    import app.models as models

    original = models.generate_password_hash
    models.generate_password_hash = functools.partial(original, method="pbkdf2:sha256:1000")
    yield
    models.generate_password_hash = original
