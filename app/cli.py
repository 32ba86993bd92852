"""The ``rookery`` command: run web and worker, manage the schema, users, tokens and the queue.

Jobs, runs and schedules live in ``app.cli_jobs``, the inventory in ``app.cli_inventory``;
both are registered here. Every error a person can cause ends in one ``Error: ...`` line
and a non-zero exit, never a traceback. People get aligned columns, scripts ``--json``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import click
from click.core import ParameterSource
from flask import current_app
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext
from procrastinate.exceptions import ConnectorException
from sqlalchemy.exc import OperationalError, ProgrammingError

from app import cli_changes, cli_inventory, cli_jobs, cli_output, present
from app.errors import RookeryError

logger = logging.getLogger("app.cli")  # not __main__ under `python -m app.cli`


#: the commands that start Rookery: they may create ./instance on a first start and log
#: what they do at INFO; every other command finds an existing instance and is quiet
SERVER_COMMANDS = frozenset({"run", "web", "worker", "demo", "db"})
#: -v on the rookery command: INFO lines for every command
_verbose = False


def _make_app():
    from app import create_app

    current = click.get_current_context(silent=True)
    root = current.find_root() if current is not None else None
    server = root is not None and root.invoked_subcommand in SERVER_COMMANDS
    if server and root is not None and root.invoked_subcommand == "run":
        # `rookery run` starts Rookery; `rookery run logs 7` (the runs group) reads it
        group = current
        while group is not None and group.parent is not root:
            group = group.parent
        server = group is None or group.invoked_subcommand is None
    overrides = (
        {}
        if server or _verbose or os.environ.get("ROOKERY_LOG_LEVEL")
        else {"ROOKERY_LOG_LEVEL": "WARNING"}
    )
    return create_app(overrides, create_instance=server)


class RookeryGroup(FlaskGroup):
    """FlaskGroup whose commands turn Rookery's errors into one ``Error: ...`` line.

    ``rookery db`` is Flask-Migrate's group, imported only when it is asked for: it
    imports alembic (about 10 MiB with Mako and Pygments), which every other command,
    a worker included, would pay for nothing.
    """

    # Every command is registered on this group: listing or finding one never loads the
    # app (FlaskGroup would, to look for app.cli commands), so `rookery --help` or a typo
    # creates no instance folder and starts no database.
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*click.Group.list_commands(self, ctx), "db"})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "db":
            from flask_migrate.cli import db

            return db
        return click.Group.get_command(self, ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RookeryError as exc:
            raise click.ClickException(_error_line(exc)) from None
        except ProgrammingError as exc:
            if getattr(exc.orig, "sqlstate", None) != "42P01":  # undefined_table
                raise
            raise click.ClickException(
                "The database has no Rookery schema yet: run `rookery db upgrade` (or start "
                "Rookery once with `rookery run`)."
            ) from None
        except OperationalError as exc:
            reason = str(exc.orig or exc).strip().splitlines()
            raise click.ClickException(
                f"PostgreSQL is unavailable: {reason[0] if reason else type(exc).__name__}"
            ) from None
        except ConnectorException as exc:
            cause = exc.__cause__ or exc
            reason = str(cause).strip().splitlines()
            raise click.ClickException(
                f"The queue is unavailable: {reason[0] if reason else type(cause).__name__} "
                "(is the schema up to date? `rookery db upgrade`)"
            ) from None


@click.group(
    cls=RookeryGroup,
    create_app=_make_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)
@click.option("-v", "--verbose", is_flag=True, help="Log what the command does (INFO lines).")
def cli(verbose: bool) -> None:
    """Rookery: network-automation jobs (config backups into git, reachability, commands)."""
    global _verbose
    _verbose = verbose


# Flask's own options (-e/--env-file, -A/--app, --debug) mean nothing for Rookery: it
# builds its app itself and reads its settings from ROOKERY_* variables.
cli.params = [p for p in cli.params if p.name not in ("env_file", "app", "debug")]


def _emit(data: Any, as_json: bool, human: str) -> None:
    cli_output.emit(data, as_json, human)


# ---------------------------------------------------------------------------- serve


def ensure_port_free(host: str, port: int) -> None:
    """Raise a clear error when ``host:port`` cannot be listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RookeryError(
                f"Cannot listen on {host}:{port}: {exc.strerror}. "
                "Stop the program using it or choose another --port."
            ) from None


def prepare_database(*, announce_admin: bool) -> None:
    """Check the connection, apply migrations, create the first admin (inside app context)."""
    from flask_migrate import upgrade

    from app import database
    from app.services import users

    database.check_connection(current_app.config["ROOKERY_PG_DSN"])
    upgrade(directory=current_app.extensions["migrate"].directory)
    _index_configs_once()
    first = users.ensure_first_admin(current_app.config["ROOKERY_ADMIN_PASSWORD"])
    if first and announce_admin:
        if first.generated:
            click.echo(
                "\n  Created the first user 'admin' with password: "
                f"{first.password}\n  It is shown only this once: log in and keep it safe.\n"
            )
        else:
            click.echo("\n  Created the first user 'admin' with ROOKERY_ADMIN_PASSWORD.\n")


def _index_configs_once() -> None:
    """After an upgrade that brought the config search, fill its index from the store
    (once: later backups keep it up to date)."""
    from sqlalchemy import func, select

    from app import config_store
    from app.extensions import db
    from app.models import LatestConfig
    from app.services import config_search

    if db.session.scalar(select(func.count()).select_from(LatestConfig)):
        return
    try:
        indexed = config_search.reindex(config_store.store_for(current_app))
    except config_store.ConfigStoreError as exc:
        logger.warning("Config search not indexed from the store: %s", exc)
        return
    if indexed:
        logger.info("Config search: indexed the latest config of %s device(s)", indexed)


@cli.group("run", invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.pass_context
@with_appcontext
def run_command(ctx: click.Context, host: str, port: int) -> None:
    """Start the web server and a worker together (Ctrl-C stops both); or look at runs.

    `rookery run` alone serves; `rookery run list|show|cancel|relaunch|logs` work on runs.
    """
    if ctx.invoked_subcommand is not None:
        given = [
            f"--{name}"
            for name in ("host", "port")
            if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(
                f"{' and '.join(given)} start the server: `rookery run {given[0]} ...` alone, "
                f"without `{ctx.invoked_subcommand}`."
            )
        return
    ensure_port_free(host, port)
    prepare_database(announce_admin=True)
    env = dict(os.environ)
    # Children find the same instance folder (and so the same embedded PostgreSQL).
    env["ROOKERY_INSTANCE"] = current_app.config["ROOKERY_INSTANCE"]
    grace = current_app.config["ROOKERY_WORKER_GRACE_SECONDS"]
    # Each child in a session of its own: Ctrl-C reaches only this supervisor, which
    # then sends each child exactly one SIGTERM (a second signal would make the worker
    # give up on the runs in flight).
    children = {
        "web": subprocess.Popen(
            [sys.executable, "-m", "app.cli", "web", "--host", host, "--port", str(port)],
            env=env,
            start_new_session=True,
        ),
        "worker": subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], env=env, start_new_session=True
        ),
    }
    click.echo(f"Rookery is running at http://{host}:{port}/ (Ctrl-C stops it)")
    sys.exit(_supervise(children, grace))


for _command in cli_jobs.RUN_COMMANDS:
    run_command.add_command(_command)


def _supervise(children: dict[str, subprocess.Popen[bytes]], grace: int) -> int:
    """Wait for the children; on a signal or a child's death, stop the others cleanly."""
    stopping = {"signal": None}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    try:
        while stopping["signal"] is None:
            dead = {name: p.returncode for name, p in children.items() if p.poll() is not None}
            if dead:
                for name, code in dead.items():
                    click.echo(f"Error: the {name} process exited with code {code}.", err=True)
                exit_code = 1
                break
            time.sleep(0.2)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 15
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                click.echo(f"The {name} process did not stop in time; killing it.", err=True)
                child.kill()
                child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return exit_code


@cli.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@with_appcontext
def web_command(host: str, port: int) -> None:
    """Serve the web pages and API (threaded; use gunicorn in production)."""
    from werkzeug.serving import make_server

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        server = make_server(host, port, app, threaded=True)
    except (OSError, SystemExit):
        ensure_port_free(host, port)
        raise
    logger.info("Web server listening on http://%s:%d/", host, port)

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        logger.info("Web server stopped")


@cli.command("worker", with_appcontext=False)  # it builds a worker's app itself
@click.option(
    "--concurrency",
    type=click.IntRange(1, 512),
    default=None,
    help="Runs at once (default: ROOKERY_WORKER_CONCURRENCY).",
)
@click.option("--name", default=None, help="Worker name shown in logs.")
@click.pass_context
def worker_command(ctx: click.Context, concurrency: int | None, name: str | None) -> None:
    """Run a worker: takes runs from the queue until Ctrl-C / SIGTERM."""
    info = ctx.ensure_object(ScriptInfo)
    if info.create_app is _make_app:
        # A worker serves no pages: its app skips them and their imports (less memory
        # per worker). A caller's own app factory (tests) is used as it is.
        info.create_app = _make_worker_app
    with info.load_app().app_context():
        _serve_worker(concurrency, name)


def _make_worker_app():
    from app import create_app

    return create_app(web=False)


def _serve_worker(concurrency: int | None, name: str | None) -> None:
    from app import database
    from app.engine import worker
    from app.extensions import db

    state = database.schema_state(db.engine)  # not migration_state: no alembic in a worker
    if not state["up_to_date"]:
        raise click.ClickException(
            f"The database schema is at {state['current'] or 'nothing'}, not "
            f"{state['heads']}: run `rookery db upgrade` first."
        )

    # procrastinate's start/stop and job lines are the worker's own log.
    logging.getLogger("procrastinate").setLevel(current_app.config["ROOKERY_LOG_LEVEL"])
    options: dict[str, Any] = {}
    if concurrency:
        options["concurrency"] = concurrency
    if name:
        options["name"] = name
    sys.exit(asyncio.run(worker.serve(**options)))


# ----------------------------------------------------------------------------- users


@cli.group("user")
def user_group() -> None:
    """Manage people: create, change role or password, disable."""


@user_group.command("create")
@click.argument("username")
@click.option(
    "--role",
    default="viewer",
    show_default=True,
    type=click.Choice(["admin", "operator", "viewer"], case_sensitive=False),
)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def user_create(username: str, role: str, password_stdin: bool, as_json: bool) -> None:
    """Create a user (password from stdin, or prompted twice)."""
    from app.services import users

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = users.create_user(username, password, role, actor="cli")
    _emit(
        {"id": user.id, "username": user.username, "role": user.role},
        as_json,
        f"Created user {user.username} ({user.role}).",
    )


@user_group.command("role")
@click.argument("username")
@click.argument("role", type=click.Choice(["admin", "operator", "viewer"], case_sensitive=False))
@with_appcontext
def user_role(username: str, role: str) -> None:
    """Change a user's role."""
    from app.services import users

    user = users.set_role(username, role, actor="cli")
    click.echo(f"{user.username} is now {user.role}.")


@user_group.command("disable")
@click.argument("username")
@with_appcontext
def user_disable(username: str) -> None:
    """Disable a user: they can no longer log in."""
    from app.services import users

    user = users.set_active(username, False, actor="cli")
    click.echo(f"{user.username} is disabled.")


@user_group.command("enable")
@click.argument("username")
@with_appcontext
def user_enable(username: str) -> None:
    """Enable a disabled user again."""
    from app.services import users

    user = users.set_active(username, True, actor="cli")
    click.echo(f"{user.username} is enabled.")


@user_group.command("password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@with_appcontext
def user_password(username: str, password_stdin: bool) -> None:
    """Set a user's password (from stdin, or prompted twice); their sessions end."""
    from app.services import users

    user = users.get_user(username)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    users.reset_password(user, password, actor="cli")
    click.echo(
        f"Password of {user.username} changed; every session of theirs is logged out "
        "(their API tokens stay valid)."
    )


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def user_list(as_json: bool) -> None:
    """List users with their role and state."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import User

    rows = db.session.scalars(select(User).order_by(User.username)).all()
    data = [{"username": u.username, "role": u.role, "active": u.active} for u in rows]
    human = "\n".join(
        f"{u['username']:<24} {u['role']:<9} {'active' if u['active'] else 'disabled'}"
        for u in data
    )
    _emit(data, as_json, human or "No users.")


# ---------------------------------------------------------------------------- tokens


@cli.group("token")
def token_group() -> None:
    """API tokens: create (shown once), list, revoke."""


def _token_dict(token: Any) -> dict[str, Any]:
    return {
        "id": token.id,
        "user": token.user.username,
        "name": token.name,
        "prefix": f"rk_{token.prefix}_",
        "created_at": present.iso(token.created_at),
        "last_used_at": present.iso(token.last_used_at),
        "expires_at": present.iso(token.expires_at),
        "revoked_at": present.iso(token.revoked_at),
    }


def _token_state(token: Any) -> str:
    from app.models import utcnow

    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= utcnow():
        return "expired"
    return "active"


@token_group.command("create")
@click.argument("username")
@click.option("--name", "label", default="", help="What the token is for (default: api).")
@click.option(
    "--expires-days", type=click.IntRange(1, 3650), default=None, help="Expire after N days."
)
@with_appcontext
def token_create(username: str, label: str, expires_days: int | None) -> None:
    """Create an API token for USERNAME; the token alone is the LAST line printed.

    It is shown this once (only its hash is stored): `rookery token create bob | tail -n1`.
    """
    from datetime import timedelta

    from app.models import utcnow
    from app.services import tokens, users

    user = users.get_user(username)
    expires_at = utcnow() + timedelta(days=expires_days) if expires_days else None
    token, plaintext = tokens.create_token(user, label, expires_at=expires_at, actor="cli")
    until = f", expires {cli_output.when(expires_at)} UTC" if expires_at else ""
    click.echo(
        f"Created API token #{token.id} {token.name!r} (rk_{token.prefix}_…) for "
        f"{user.username}{until}. It is shown only this once:"
    )
    click.echo(plaintext)


@token_group.command("revoke")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def token_revoke(ref: str, as_json: bool) -> None:
    """Revoke a token by id or prefix (rk_xxxxxxxx); using it afterwards is refused."""
    from app.services import tokens

    token = tokens.revoke_token(ref, actor="cli")
    _emit(
        _token_dict(token),
        as_json,
        f"Revoked API token #{token.id} {token.name!r} (rk_{token.prefix}_…) "
        f"of {token.user.username}.",
    )


@token_group.command("list")
@click.option("--user", "username", default=None, help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def token_list(username: str | None, as_json: bool) -> None:
    """List API tokens (never the tokens themselves: their prefix)."""
    from app.services import tokens, users

    rows = tokens.list_tokens(users.get_user(username) if username else None)
    data = [{**_token_dict(t), "state": _token_state(t)} for t in rows]
    human = cli_output.table(
        ["ID", "USER", "NAME", "PREFIX", "STATE", "CREATED", "LAST USED", "EXPIRES"],
        [
            [
                t.id,
                t.user.username,
                t.name,
                f"rk_{t.prefix}_…",
                _token_state(t),
                cli_output.when(t.created_at),
                cli_output.when(t.last_used_at),
                cli_output.when(t.expires_at),
            ]
            for t in rows
        ],
        empty="No API tokens.",
    )
    _emit(data, as_json, human)


# ----------------------------------------------------------------------------- queue


@cli.group("queue")
def queue_group() -> None:
    """Look at the queue and its workers."""


@queue_group.command("ping")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def queue_ping(timeout: float, as_json: bool) -> None:
    """Send a ping through the queue and wait for a worker to answer it."""
    from app.engine import queue

    started = time.monotonic()
    with queue.queue_app.open():
        job_id = queue.ping.defer()
        while time.monotonic() - started < timeout:
            status = queue.queue_app.job_manager.get_job_status(job_id)
            if status.value == "succeeded":
                elapsed = time.monotonic() - started
                _emit(
                    {"job_id": job_id, "seconds": round(elapsed, 3)},
                    as_json,
                    f"A worker answered in {elapsed:.2f}s.",
                )
                return
            if status.value in {"failed", "cancelled", "aborted"}:
                raise click.ClickException(f"The ping ended {status.value}; see the worker's log.")
            time.sleep(0.1)
        queue.queue_app.job_manager.cancel_job_by_id(job_id, delete_job=True)
    raise click.ClickException(
        f"No worker answered within {timeout:g}s. Is `rookery worker` running?"
    )


# ------------------------------------------------------------------------------ jobs


@cli.command("new-job")
@click.argument("name")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder to write into (default: the first ROOKERY_JOBS_PATH folder, else app/jobs).",
)
def new_job(name: str, folder: str | None) -> None:
    """Write a commented template job module NAME.py to start a new job type from."""
    from pathlib import Path

    from app import job_template, registry

    try:
        text = job_template.render_template(name)
    except RookeryError as exc:
        raise click.ClickException(exc.message) from None
    if folder is None:
        extra = [p for p in os.environ.get("ROOKERY_JOBS_PATH", "").split(os.pathsep) if p]
        folder = extra[0] if extra else str(registry.builtin_jobs_dir())
    target = Path(folder) / f"{name}.py"
    if target.exists():
        raise click.ClickException(f"{target} already exists; choose another name.")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    click.echo(f"Wrote {target}: edit JOB_META and run(), then restart the worker.")


cli.add_command(cli_jobs.job_group)
cli.add_command(cli_jobs.schedule_group)
cli.add_command(cli_inventory.device_group)
cli.add_command(cli_changes.change_group)


# ------------------------------------------------------------------------------ demo

DEMO_JOB = "Demo backup"


@cli.command("demo")
@click.option(
    "--devices",
    default=5,
    show_default=True,
    type=click.IntRange(1, 200),
    help="How many emulated devices (five platforms in turn).",
)
@click.option(
    "--drift",
    type=click.FloatRange(0.1, 1440),
    default=None,
    help="Every MINUTES, change one device's configuration (the devices in turn), so "
    "backups commit changes and diffs appear.",
    metavar="MINUTES",
)
@click.option(
    "--changeable",
    default=3,
    show_default=True,
    type=click.IntRange(0, 50),
    help="How many more devices (cisco_ios, tag 'demo-core') keep a running config that "
    "change sets change and roll back.",
)
@with_appcontext
def demo_command(devices: int, drift: float | None, changeable: int) -> None:
    """Start emulated devices on 127.0.0.1, load them as inventory, and keep them up."""
    try:
        from app import demo_lab
    except ImportError:
        raise click.ClickException(
            "The demo needs the fakenos package: pip install 'rookery[demo]' "
            "(or -e '.[demo]' in a checkout)."
        ) from None
    from app.errors import NotFound
    from app.services import credentials, inventory, jobs

    if any(importlib.util.find_spec(name) is None for name in ("fakenos", "asyncssh")):
        raise click.ClickException(
            "rookery demo needs the device emulators (fakenos, asyncssh), an optional extra: "
            "run `.venv/bin/pip install -e '.[demo]'` in the Rookery folder, then try again."
        )
    from app.stateful_lab import StatefulLab

    stateful = StatefulLab(
        [
            dataclasses.replace(d, name=f"core-{i + 1:03d}")
            for i, d in enumerate(demo_lab.default_fleet(changeable, ["cisco_ios"], seed="core"))
        ]
    )

    def load(fakenos: demo_lab.DeviceLab) -> None:
        labs: list[Any] = [fakenos, stateful]
        for lab, device in [(one, d) for one in labs for d in one.devices]:
            name, tag = f"demo-{device.name}", f"demo-{device.name}"
            tags = ["demo", tag] + (["demo-core"] if lab is stateful else [])
            fields = {
                "host": "127.0.0.1",
                "port": lab.port_of(device.name),
                "platform": device.platform,
            }
            try:
                existing = inventory.get_by_name(name)
                inventory.update_device(existing.id, actor="demo", **fields)
            except NotFound:
                inventory.create_device(actor="demo", name=name, tags=tags, **fields)
            try:
                credential = credentials.get_credential_by_name(f"{name}-login")
                credentials.update_credential(
                    credential.id, actor="demo", username=device.username, password=device.password
                )
            except NotFound:
                credentials.create_credential(
                    f"{name}-login", device.username, device.password, tags=[tag], actor="demo"
                )
        try:
            jobs.get_job_by_name(DEMO_JOB)
        except NotFound:
            jobs.create_job(
                name=DEMO_JOB,
                job_type="config_backup",
                target_tags=["demo"],
                description="Backs up the emulated demo devices.",
                actor="demo",
            )
        count = len(fakenos.devices) + len(stateful.devices)
        click.echo(
            f"{count} emulated devices are up on 127.0.0.1 and in the inventory (tag 'demo'):"
        )
        for lab, device in [(one, d) for one in labs for d in one.devices]:
            click.echo(
                f"  demo-{device.name:<12} {device.platform:<14} port {lab.port_of(device.name)}"
            )
        if stateful.devices:
            click.echo(
                f"The {len(stateful.devices)} demo-core devices (tag 'demo-core') keep a running "
                "config: change sets change them (README: Changing configuration safely)."
            )
        click.echo(
            f"\nWith `rookery run` going in another terminal, back them up from the "
            f"Jobs page or with:\n  rookery job run '{DEMO_JOB}' --wait 120"
        )
        if drift:
            click.echo(
                f"Every {drift:g} minute(s) one device's configuration changes (--drift): "
                "back up again to see the change as a diff."
            )
        else:
            click.echo(
                "Their configurations stay as they are; `rookery demo --drift 5` changes one "
                "every 5 minutes, so backups show diffs."
            )
        click.echo("Ctrl-C here stops the devices.")

    # The emulated devices' SSH servers log every client that hangs up (a backup's
    # session ending) at ERROR: noise on this console, not a problem.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    with stateful:
        demo_lab.serve_forever(
            demo_lab.default_fleet(devices),
            load,
            drift_minutes=drift,
            on_drift=lambda name: click.echo(f"Drift: demo-{name}'s configuration changed."),
        )


# -------------------------------------------------------------------------- settings


@cli.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's settings table.")
def settings_command(markdown: bool) -> None:
    """List every setting Rookery reads from the environment."""
    from app.config import SETTINGS

    if markdown:
        click.echo("| Variable | Default | Meaning |\n|---|---|---|")
        for s in SETTINGS:
            default = "(unset)" if s.default in (None, "") else f"`{s.default}`"
            click.echo(f"| `{s.env}` | {default} | {s.help} |")
        return
    for s in SETTINGS:
        value = os.environ.get(s.env)
        shown = ("(set)" if s.secret else value) if value else f"default: {s.default}"
        click.echo(f"{s.env:<36} {shown}")


# ------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``rookery`` console script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="rookery")


def _error_line(exc: RookeryError) -> str:
    """The error's message, with each field's reason the message does not already give."""
    fields = getattr(exc, "fields", None) or {}
    extra = [f"{name}: {reason}" for name, reason in fields.items() if reason not in exc.message]
    return f"{exc.message} ({'; '.join(extra)})" if extra else exc.message


if __name__ == "__main__":
    main()
