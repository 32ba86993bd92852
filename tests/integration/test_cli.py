"""The rookery command's user and schema commands, with their error lines."""

from __future__ import annotations

from sqlalchemy import select

from app.cli import cli
from app.extensions import db
from app.models import AuditEntry, User


def invoke(runner, *args, input=None):
    return runner.invoke(cli, list(args), input=input)


def test_user_create_from_stdin_then_login(runner, auth):
    result = invoke(
        runner,
        "user",
        "create",
        "Bob",
        "--role",
        "admin",
        "--password-stdin",
        input="long-enough-pw\n",
    )
    assert result.exit_code == 0, result.output
    assert "Created user bob (admin)." in result.output
    assert auth.login("bob", "long-enough-pw").status_code == 302


def test_user_create_json_output(runner):
    result = invoke(
        runner, "user", "create", "carol", "--password-stdin", "--json", input="long-enough-pw\n"
    )
    assert result.exit_code == 0, result.output
    assert '"username": "carol"' in result.output
    assert '"role": "viewer"' in result.output


def test_duplicate_user_is_one_error_line(runner):
    invoke(runner, "user", "create", "dave", "--password-stdin", input="long-enough-pw\n")
    result = invoke(runner, "user", "create", "DAVE", "--password-stdin", input="other-password\n")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: A user named 'dave' already exists."


def test_short_password_is_refused_and_nothing_is_created(runner, app):
    result = invoke(runner, "user", "create", "erin", "--password-stdin", input="short\n")
    assert result.exit_code == 1
    assert "at least 8 characters" in result.output
    with app.app_context():
        assert db.session.scalar(select(User).where(User.username == "erin")) is None


def test_invalid_role_is_a_usage_error(runner):
    result = invoke(
        runner,
        "user",
        "create",
        "frank",
        "--role",
        "root",
        "--password-stdin",
        input="long-enough-pw\n",
    )
    assert result.exit_code == 2
    assert "'root' is not one of" in result.output


def test_role_and_disable_are_audited(runner, app, auth):
    invoke(runner, "user", "create", "gina", "--password-stdin", input="long-enough-pw\n")
    assert invoke(runner, "user", "role", "gina", "operator").exit_code == 0
    assert invoke(runner, "user", "disable", "gina").exit_code == 0
    assert auth.login("gina", "long-enough-pw").status_code == 401
    listing = invoke(runner, "user", "list")
    assert "gina" in listing.output and "operator" in listing.output
    assert "disabled" in listing.output
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        trail = [(r.actor, r.action, r.before, r.after) for r in rows if r.object_type == "user"]
    assert trail[0][:2] == ("cli", "create")
    assert trail[1] == ("cli", "update", {"role": "viewer"}, {"role": "operator"})
    assert trail[2] == ("cli", "disable", {"active": True}, {"active": False})


def test_unknown_user_is_one_error_line(runner):
    result = invoke(runner, "user", "disable", "nobody")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: No user named 'nobody'."


def test_audit_never_stores_the_password(runner, app):
    invoke(runner, "user", "create", "hank", "--password-stdin", input="my-secret-pw-1\n")
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry)).all()
        assert rows
        assert all("my-secret-pw-1" not in repr((r.before, r.after, r.summary)) for r in rows)


def test_first_admin_is_created_once(app):
    from app.services import users

    with app.app_context():
        first = users.ensure_first_admin(None)
        assert first is not None and first.generated and len(first.password) >= 12
        assert users.ensure_first_admin(None) is None
        admin = db.session.scalar(select(User).where(User.username == "admin"))
        assert admin.role == "admin"
        assert admin.check_password(first.password)


def test_first_admin_uses_the_configured_password(app):
    from app.services import users

    with app.app_context():
        first = users.ensure_first_admin("configured-pw")
        assert first is not None and not first.generated
        admin = db.session.scalar(select(User).where(User.username == "admin"))
        assert admin.check_password("configured-pw")


def test_settings_markdown_lists_every_setting(runner):
    from app.config import SETTINGS

    result = invoke(runner, "settings", "--markdown")
    assert result.exit_code == 0
    for setting in SETTINGS:
        assert f"`{setting.env}`" in result.output


def test_db_upgrade_is_idempotent(runner, app):
    from app import database

    result = invoke(runner, "db", "upgrade")
    assert result.exit_code == 0, result.output
    with app.app_context():
        state = database.migration_state(db.engine)
    assert state["up_to_date"] and state["current"] == state["heads"]


def test_schema_state_agrees_with_alembic(app):
    """The worker's alembic-free check answers as alembic does: up to date, behind, empty."""
    from sqlalchemy import text

    from app import database

    with app.app_context():
        assert database.schema_state(db.engine) == database.migration_state(db.engine)
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0001_procrastinate'"))
        behind = database.schema_state(db.engine)
        assert behind == database.migration_state(db.engine)
        assert behind["current"] == ["0001_procrastinate"] and not behind["up_to_date"]
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
        empty = database.schema_state(db.engine)
        assert empty == database.migration_state(db.engine)
        assert empty["current"] == [] and not empty["up_to_date"]


def test_worker_refuses_a_schema_that_is_behind(runner, app):
    from sqlalchemy import text

    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001_procrastinate'"))
    result = invoke(runner, "worker")
    assert result.exit_code == 1
    assert result.output.startswith("Error: The database schema is at ['0001_procrastinate'], not")
    assert "run `rookery db upgrade` first." in result.output


def test_outside_an_instance_a_command_says_what_to_do_and_creates_nothing(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("ROOKERY_INSTANCE", "DATABASE_URL")}

    def rookery(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # `rookery run logs` is the runs group, not `rookery run` (the server): it finds no
    # instance either, rather than making one
    for args in (("job", "list"), ("run", "logs", "1")):
        listed = rookery(*args)
        assert listed.returncode == 1
        lines = listed.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: No Rookery instance found"), lines
        assert "set ROOKERY_INSTANCE" in lines[0]
    helped = rookery("--help")
    assert helped.returncode == 0
    assert "--debug" not in helped.stdout and "--env-file" not in helped.stdout
    assert "-v, --verbose" in helped.stdout and "job" in helped.stdout
    assert list(tmp_path.iterdir()) == []  # no instance folder, no keys, no database
