"""``rookery change``: change sets from the command line — create from a file, list,
show, preview, submit, approve and reject (applying them is not built yet).

Reviews need a person: ``--as USER`` names the user who submits, approves or rejects
(the CLI runs with the instance's keys, so whoever runs it may act as any user; the
audit trail names the user given).
"""

from __future__ import annotations

import time
from typing import IO, Any

import click
from flask.cli import AppGroup, with_appcontext

from app.cli_jobs import ids_by_name_or_id, read_yaml
from app.cli_output import emit, fields, json_option, table, when
from app.errors import ValidationError
from app.extensions import db
from app.models import Change, Device, User
from app.services import changes, rollouts, users

#: what a change file may hold (the API's body)
CHANGE_FIELDS = frozenset(
    {
        "name",
        "description",
        "targets",
        "template",
        "variables",
        "secret_variables",
        "checks",
        "canary",
        "wave_size",
        "pause_seconds",
        "max_failed",
        "rollback",
        "reachability",
    }
)


def find_change(ref: str) -> Change:
    """A change by id, or else by name."""
    if ref.isdigit() and len(ref) <= 9:
        return changes.get_change(int(ref))
    for change in changes.list_changes():
        if change.name == ref:
            return change
    raise ValidationError(f"No change named {ref!r}.")


def as_user(name: str | None) -> User:
    if not name:
        raise ValidationError("Say who acts: --as USER (reviews are made by people).")
    return users.find_user(name)


def change_args(spec: dict[str, Any]) -> dict[str, Any]:
    """An API-shaped change body as ``changes.create_change`` keywords."""
    args = {k: v for k, v in spec.items() if k != "targets"}
    targets = spec.get("targets") or {}
    if not isinstance(targets, dict):
        raise ValidationError("targets is a mapping of tags and devices.")
    args["target_tags"] = list(targets.get("tags") or [])
    refs = list(targets.get("devices") or [])
    args["target_device_ids"] = ids_by_name_or_id("targets.devices", refs, Device)
    return args


@click.group("change", cls=AppGroup)
def change_group() -> None:
    """Change sets: create, list, show, preview, submit, approve, reject, apply."""


@change_group.command("create")
@click.argument("spec", type=click.File("r"))
@click.option("--as", "who", required=True, help="The author (a user name).")
@json_option
@with_appcontext
def change_create(spec: IO[str], who: str, as_json: bool) -> None:
    """Draft a change from SPEC, a YAML or JSON file with the API's fields."""
    body = read_yaml(spec, sorted(CHANGE_FIELDS))
    change = changes.create_change(actor=as_user(who), **change_args(body))
    emit(changes.view(change), as_json, f"Change #{change.id} {change.name} drafted.")


@change_group.command("list")
@json_option
@with_appcontext
def change_list(as_json: bool) -> None:
    """Every change set, newest first."""
    data = [changes.view(c) for c in changes.list_changes()]
    human = table(
        ["ID", "NAME", "STATUS", "VERSION", "AUTHOR", "REVIEWED BY"],
        [
            [c["id"], c["name"], c["status"], c["version"], c["created_by"], c["reviewed_by"] or ""]
            for c in data
        ],
        empty="No change sets.",
    )
    emit(data, as_json, human)


@change_group.command("show")
@click.argument("change")
@json_option
@with_appcontext
def change_show(change: str, as_json: bool) -> None:
    """Show CHANGE (id or name): targets, template, checks, rollout, review."""
    found = find_change(change)
    data = changes.view(found, devices=True)
    devices = changes.target_devices(found.target_tags, found.target_device_ids)
    human = (
        fields(
            [
                ("Change", f"#{found.id} {found.name}"),
                ("Status", f"{data['status']} (version {found.version})"),
                ("Applied by", f"run #{found.run_id}" if found.run_id else ""),
                ("Author", f"{found.created_by} {when(found.created_at)}"),
                (
                    "Reviewed",
                    f"{found.reviewed_by} {when(found.reviewed_at)} {found.review_note}"
                    if found.reviewed_by
                    else "",
                ),
                ("Targets", ", ".join(d.name for d in devices)),
                (
                    "Rollout",
                    f"canary {found.canary}, waves of {found.wave_size}, "
                    f"stop after {found.max_failed} failed, roll back {found.rollback}",
                ),
                (
                    "Checks",
                    "; ".join(
                        f"{c['command']} {'!~' if c['absent'] else '~'} {c['expect']} "
                        f"({c.get('when', 'both')})"
                        for c in found.checks
                    ),
                ),
            ]
        )
        + "\n\n"
        + found.template
    )
    if data["devices"]:
        human += "\n\n" + table(
            ["WAVE", "DEVICE", "STATE", "MESSAGE"],
            [
                [d["wave"] or "canary", d["device"]["name"], d["state"], d["message"][:80]]
                for d in data["devices"]
            ],
            empty="",
        )
    emit(data, as_json, human)


@change_group.command("preview")
@click.argument("change")
@click.option(
    "--live",
    "live_as",
    metavar="USER",
    default=None,
    help="Fetch each device's running config instead (a run, read only), as USER.",
)
@click.option("--wait", default=120, show_default=True, help="Seconds to wait for --live.")
@json_option
@with_appcontext
def change_preview(change: str, live_as: str | None, wait: int, as_json: bool) -> None:
    """What CHANGE would do to each target device's latest backup (nothing is sent), or
    with --live to its running config."""
    found = find_change(change)
    if live_as:
        data = _live_preview(found.id, as_user(live_as), wait)
    else:
        data = changes.preview_view(changes.preview(found.id))
    parts = []
    for item in data["items"]:
        name = item["device"]["name"]
        if item["commands"] is None or item["effective"] is None:
            parts.append(f"== {name}: {item['problem']}")
        elif not item["effective"]:
            parts.append(f"== {name}: nothing changes (it has it all)")
        else:
            parts.append(f"== {name}\n{item['diff']}")
    emit(data, as_json, "\n".join(parts) or "No target device.")


def _live_preview(change_id: int, actor: User, wait: int) -> dict[str, Any]:
    """Start (or join) the live preview run and wait for it; its items."""
    run = rollouts.start_live_preview(change_id, actor=actor)
    deadline = time.monotonic() + wait
    while True:
        db.session.expire_all()
        found, items = rollouts.live_preview(change_id)
        if found is not None and found.id == run.id and found.run_status.is_final:
            return changes.preview_view(items)
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"The live preview (run #{run.id}) did not end within {wait} s: is a "
                "worker running? (`rookery run` or `rookery worker`)"
            )
        time.sleep(0.5)


@change_group.command("submit")
@click.argument("change")
@click.option("--as", "who", required=True, help="Who submits it (a user name).")
@json_option
@with_appcontext
def change_submit(change: str, who: str, as_json: bool) -> None:
    """Ask for a review of CHANGE."""
    found = changes.submit(find_change(change).id, actor=as_user(who))
    emit(changes.view(found), as_json, f"Change #{found.id} submitted for approval.")


@change_group.command("approve")
@click.argument("change")
@click.option("--as", "who", required=True, help="The reviewer (not the author).")
@click.option("--note", default="", help="A note for the record.")
@json_option
@with_appcontext
def change_approve(change: str, who: str, note: str, as_json: bool) -> None:
    """Approve CHANGE (someone other than its author)."""
    found = changes.review(find_change(change).id, actor=as_user(who), approve=True, note=note)
    emit(changes.view(found), as_json, f"Change #{found.id} approved by {found.reviewed_by}.")


@change_group.command("reject")
@click.argument("change")
@click.option("--as", "who", required=True, help="The reviewer.")
@click.option("--note", required=True, help="Why it is rejected.")
@json_option
@with_appcontext
def change_reject(change: str, who: str, note: str, as_json: bool) -> None:
    """Reject CHANGE, saying why."""
    found = changes.review(find_change(change).id, actor=as_user(who), approve=False, note=note)
    emit(changes.view(found), as_json, f"Change #{found.id} rejected.")


@change_group.command("apply")
@click.argument("change")
@click.option("--as", "who", required=True, help="Who applies it (a user name).")
@json_option
@with_appcontext
def change_apply(change: str, who: str, as_json: bool) -> None:
    """Apply an approved CHANGE: a run pushes it in waves, canary first."""
    found = find_change(change)
    run = rollouts.start(found.id, actor=as_user(who))
    emit(
        {"run_id": run.id},
        as_json,
        f"Change #{found.id} is being applied by run #{run.id}: follow it with "
        f"`rookery run logs {run.id}` and `rookery change show {found.id}`.",
    )
