"""Change sets: written, previewed and reviewed before anything reaches a device.

A change renders its template per target device (app/changes/render.py); the preview
predicts, per device, what the commands change in its current config (the latest
backup) with hier_config (app/changes/preview.py). A change is submitted for review and
approved (or rejected) by someone other than its author, unless
``ROOKERY_CHANGE_SELF_APPROVAL`` is on; an edit of what the change does makes it a draft
again and withdraws the approval. Every step is audited.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from app import audit, command_policy, crypto
from app.changes import render as rendering
from app.errors import Conflict, Forbidden, ValidationError
from app.extensions import db
from app.models import (
    Change,
    ChangeStatus,
    Device,
    LatestConfig,
    Tag,
    User,
    device_tags,
    utcnow,
)
from app.services import actor_name, flush_unique, get_row

MAX_NAME = 128
MAX_DESCRIPTION = 4000
MAX_CHECKS = 20
MAX_VARIABLES = 100
#: the fields whose edit changes what the change does (and withdraws an approval)
SUBSTANCE = (
    "target_tags",
    "target_device_ids",
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
)
FIELDS = ("name", "description", *SUBSTANCE)
#: when a check runs: before the push (a pre-check), after it (a post-check), or both
CHECK_WHEN = ("both", "before", "after")


def get_change(change_id: int) -> Change:
    return get_row(Change, change_id, "change")


def list_changes() -> list[Change]:
    return list(db.session.scalars(select(Change).order_by(Change.id.desc())))


def view(change: Change, *, devices: bool = False) -> dict[str, Any]:
    """A change as the API shows it; ``devices``: with its latest apply's devices."""
    from app.services import rollouts

    shown = {
        "id": change.id,
        "name": change.name,
        "description": change.description,
        "status": rollouts.status_of(change),
        "review_status": change.status,
        "run_id": change.run_id,
        "job_id": change.job_id,
        "version": change.version,
        "targets": {
            "tags": list(change.target_tags),
            "devices": [
                {"id": d.id, "name": d.name} for d in _devices_by_id(change.target_device_ids)
            ],
        },
        "template": change.template,
        "variables": shown_variables(change),
        "secret_variables": list(change.secret_variables),
        "checks": change.checks,
        "canary": change.canary,
        "wave_size": change.wave_size,
        "pause_seconds": change.pause_seconds,
        "max_failed": change.max_failed,
        "rollback": change.rollback,
        "reachability": change.reachability,
        "created_by": change.created_by,
        "created_at": change.created_at.isoformat(),
        "updated_at": change.updated_at.isoformat(),
        "reviewed_by": change.reviewed_by,
        "reviewed_at": change.reviewed_at.isoformat() if change.reviewed_at else None,
        "review_note": change.review_note,
    }
    if devices:
        rows = rollouts.device_states(change.run_id) if change.run_id else []
        ended = shown["status"] != "applying"
        shown["devices"] = [rollouts.state_view(row, run_ended=ended) for row in rows]
    return shown


def shown_variables(change: Change) -> dict[str, Any]:
    """The change's variables fit to show: the secret ones as ``***``."""
    return crypto.redact_params(change.variables, change.secret_variables)


def secret_values(change: Change) -> list[str]:
    """The values of the change's secret variables, in clear (for ``hide``)."""
    revealed = crypto.reveal_params(change.variables)
    return [
        str(revealed[name])
        for name in change.secret_variables
        if isinstance(revealed.get(name), str) and revealed[name]
    ]


def _devices_by_id(ids: list[int]) -> list[Device]:
    if not ids:
        return []
    return list(db.session.scalars(select(Device).where(Device.id.in_(ids)).order_by(Device.name)))


# ---------------------------------------------------------------- validation


def _int(value: Any, name: str, errors: dict[str, str], *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        errors[name] = f"A whole number from {low} to {high}."
        return low
    try:
        number = int(value)
    except ValueError:
        errors[name] = f"A whole number from {low} to {high}."
        return low
    if not low <= number <= high:
        errors[name] = f"A whole number from {low} to {high}."
    return number


def _clean_checks(value: Any, errors: dict[str, str]) -> list[dict[str, Any]]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or len(value) > MAX_CHECKS:
        errors["checks"] = f"At most {MAX_CHECKS} checks, each {{command, expect, absent, when}}."
        return []
    cleaned = []
    for number, item in enumerate(value, 1):
        if not isinstance(item, dict) or set(item) - {"command", "expect", "absent", "when"}:
            errors["checks"] = f"Check {number}: give command, expect, absent and when only."
            return []
        when = item.get("when") or "both"
        if when not in CHECK_WHEN:
            errors["checks"] = f"Check {number}: when is before, after or both, not {when!r}."
            return []
        command = str(item.get("command") or "").strip()
        expect = str(item.get("expect") or "")
        problem = command_policy.control_problem(command) if command else "Give a command."
        if problem is None:
            problem = command_policy.policy_problem(command)
        if problem is not None:
            errors["checks"] = f"Check {number} ({command or 'no command'}): {problem}"
            return []
        if not expect:
            errors["checks"] = f"Check {number}: give the pattern its output must (not) show."
            return []
        try:
            re.compile(expect)
        except re.error as exc:
            errors["checks"] = f"Check {number}: not a regular expression: {exc}."
            return []
        cleaned.append(
            {"command": command, "expect": expect, "absent": bool(item.get("absent")), "when": when}
        )
    return cleaned


def _clean_variables(value: Any, errors: dict[str, str]) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict) or len(value) > MAX_VARIABLES:
        errors["variables"] = f"Variables are an object of at most {MAX_VARIABLES} names."
        return {}
    bad = [k for k in value if not isinstance(k, str) or not k.isidentifier() or k == "device"]
    if bad:
        errors["variables"] = (
            f"{bad[0]!r} cannot be a variable's name (letters, digits and _; not 'device')."
        )
    return dict(value)


def _clean_secret_names(value: Any, variables: dict[str, Any], errors: dict[str, str]) -> list[str]:
    names = sorted({str(n).strip() for n in value or [] if str(n).strip()})
    wrong = [n for n in names if not isinstance(variables.get(n), str) or not variables[n]]
    if wrong:
        errors["secret_variables"] = (
            f"{wrong[0]!r} is not a variable with a text value: a secret variable needs one."
        )
    return names


def _clean(fields: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    name = str(fields.get("name") or "").strip()
    if not name:
        errors["name"] = "Give the change a name."
    elif len(name) > MAX_NAME or "\x00" in name:
        errors["name"] = f"At most {MAX_NAME} characters, no NUL."
    description = str(fields.get("description") or "").strip()
    if len(description) > MAX_DESCRIPTION or "\x00" in description:
        errors["description"] = f"At most {MAX_DESCRIPTION} characters, no NUL."
    tags = sorted({str(t).strip() for t in fields.get("target_tags") or [] if str(t).strip()})
    known_tags = (
        set(db.session.scalars(select(Tag.name).where(Tag.name.in_(tags)))) if tags else set()
    )
    unknown = [t for t in tags if t not in known_tags]
    if unknown:
        errors["targets"] = f"No tag named {unknown[0]!r}."
    device_ids = sorted({int(i) for i in fields.get("target_device_ids") or []})
    if device_ids and len(_devices_by_id(device_ids)) != len(device_ids):
        errors["targets"] = "A target device does not exist (any more)."
    template = str(fields.get("template") or "")
    try:
        rendering.check_template(template)
    except rendering.RenderError as exc:
        errors["template"] = str(exc)
    variables = _clean_variables(fields.get("variables"), errors)
    secret_variables = _clean_secret_names(fields.get("secret_variables"), variables, errors)
    checks = _clean_checks(fields.get("checks"), errors)
    canary = _int(fields.get("canary", 1), "canary", errors, low=0, high=10_000)
    wave_size = _int(fields.get("wave_size", 10), "wave_size", errors, low=1, high=10_000)
    pause = _int(fields.get("pause_seconds", 0), "pause_seconds", errors, low=0, high=86_400)
    max_failed = _int(fields.get("max_failed", 1), "max_failed", errors, low=1, high=10_000)
    rollback = str(fields.get("rollback") or "device")
    if rollback not in ("device", "all"):
        errors["rollback"] = "Roll back the failed 'device', or 'all' changed devices."
    reachability = fields.get("reachability", False)
    if not isinstance(reachability, bool):
        errors["reachability"] = "true or false."
    if errors:
        raise ValidationError(" ".join(errors.values()), fields=errors)
    cleaned = {
        "name": name,
        "description": description,
        "target_tags": tags,
        "target_device_ids": device_ids,
        "template": template.replace("\r\n", "\n"),
        "variables": variables,
        "secret_variables": secret_variables,
        "checks": checks,
        "canary": canary,
        "wave_size": wave_size,
        "pause_seconds": pause,
        "max_failed": max_failed,
        "rollback": rollback,
        "reachability": reachability,
    }
    if not target_devices(cleaned["target_tags"], cleaned["target_device_ids"]):
        raise ValidationError(
            "The change targets no enabled device: give tags or devices that have some.",
            fields={"targets": "No enabled device matches."},
        )
    return cleaned


def target_devices(tags: list[str], device_ids: list[int]) -> list[Device]:
    """The enabled devices with any of ``tags`` or among ``device_ids``, by name."""
    if not tags and not device_ids:
        return []
    by_tag = (
        select(device_tags.c.device_id)
        .join(Tag, Tag.id == device_tags.c.tag_id)
        .where(Tag.name.in_(tags))
    )
    return list(
        db.session.scalars(
            select(Device)
            .where(Device.enabled.is_(True), or_(Device.id.in_(by_tag), Device.id.in_(device_ids)))
            .options(selectinload(Device.tags))
            .order_by(Device.name)
        )
    )


# ------------------------------------------------------------------ lifecycle


def create_change(*, actor: User | str | None, **fields: Any) -> Change:
    """A new draft (audited; commits)."""
    cleaned = _clean(fields)
    cleaned["variables"] = crypto.seal_params(cleaned["variables"], cleaned["secret_variables"])
    change = Change(**cleaned, created_by=actor_name(actor), status=ChangeStatus.DRAFT.value)
    db.session.add(change)
    flush_unique(f"A change named {cleaned['name']!r} exists.")
    audit.record(
        actor=actor,
        action="change.create",
        object_type="change",
        object_id=change.id,
        summary=f"Change {change.name} drafted",
        after=view(change),
    )
    db.session.commit()
    return change


def update_change(change_id: int, *, actor: User | str | None, **fields: Any) -> Change:
    """Edit a change (audited; commits). Editing what it does makes it a draft again: an
    approval or a pending review is withdrawn."""
    from app.services import rollouts

    change = get_change(change_id)
    running = rollouts.active_run(change)
    if running is not None:
        raise Conflict(
            f"Change {change.name} is being applied by run #{running.id}: it cannot be "
            "edited until that run ends (cancel it to stop the rollout)."
        )
    before = view(change)
    stored = {k: getattr(change, k) for k in FIELDS}
    stored["variables"] = crypto.reveal_params(change.variables)
    current = {**stored, **{k: v for k, v in fields.items() if k in FIELDS}}
    if isinstance(current["variables"], dict):
        # a secret given back as shown (***) keeps its stored value
        current["variables"] = {
            k: stored["variables"].get(k, v) if v == crypto.REDACTED else v
            for k, v in current["variables"].items()
        }
    cleaned = _clean(current)
    substance = any(cleaned[k] != stored[k] for k in SUBSTANCE)
    cleaned["variables"] = crypto.seal_params(cleaned["variables"], cleaned["secret_variables"])
    for key, value in cleaned.items():
        setattr(change, key, value)
    change.updated_at = utcnow()
    withdrawn = substance and change.status != ChangeStatus.DRAFT.value
    if substance:
        change.version += 1
        change.status = ChangeStatus.DRAFT.value
        change.reviewed_by = change.reviewed_at = None
        change.review_note = ""
    flush_unique(f"A change named {cleaned['name']!r} exists.")
    audit.record(
        actor=actor,
        action="change.update",
        object_type="change",
        object_id=change.id,
        summary=f"Change {change.name} edited"
        + (f" (was {before['status']}: back to draft)" if withdrawn else ""),
        before=before,
        after=view(change),
    )
    db.session.commit()
    return change


def submit(change_id: int, *, actor: User | str | None) -> Change:
    """Ask for a review (a draft or a rejected change); the change's job is made then."""
    from app.services import rollouts

    change = get_change(change_id)
    if change.status not in (ChangeStatus.DRAFT.value, ChangeStatus.REJECTED.value):
        raise Conflict(f"Change {change.name} is {change.status}: only a draft is submitted.")
    unrendered = [p for p in preview(change_id) if p.commands is None]
    if unrendered:
        raise ValidationError(
            f"The template does not render for {len(unrendered)} device(s): "
            + "; ".join(str(p.problem) for p in unrendered[:3]),
            fields={"template": str(unrendered[0].problem)},
        )
    if not target_devices(change.target_tags, change.target_device_ids):
        raise ValidationError(
            "The change targets no enabled device now.", fields={"targets": "No device."}
        )
    change.status = ChangeStatus.AWAITING_APPROVAL.value
    change.reviewed_by = change.reviewed_at = None
    change.review_note = ""
    rollouts.ensure_job(change)
    audit.record(
        actor=actor,
        action="change.submit",
        object_type="change",
        object_id=change.id,
        summary=f"Change {change.name} (version {change.version}) submitted for approval",
    )
    db.session.commit()
    return change


def review(change_id: int, *, actor: User | str | None, approve: bool, note: str = "") -> Change:
    """Approve or reject a submitted change: someone other than its author (unless
    ROOKERY_CHANGE_SELF_APPROVAL), audited; commits."""
    change = get_change(change_id)
    who = actor_name(actor)
    if change.status != ChangeStatus.AWAITING_APPROVAL.value:
        raise Conflict(
            f"Change {change.name} is {change.status}: only a submitted change is reviewed."
        )
    if who == change.created_by and not current_app.config.get("ROOKERY_CHANGE_SELF_APPROVAL"):
        raise Forbidden(
            f"{who} wrote change {change.name}: another operator or an admin must review it."
        )
    note = str(note or "").strip()
    if len(note) > MAX_DESCRIPTION or "\x00" in note:
        raise ValidationError("A note is at most 4000 characters.", fields={"note": "Too long."})
    if not approve and not note:
        raise ValidationError(
            "Say why the change is rejected.", fields={"note": "Give the reason."}
        )
    change.status = (ChangeStatus.APPROVED if approve else ChangeStatus.REJECTED).value
    change.reviewed_by = who
    change.reviewed_at = utcnow()
    change.review_note = note
    verb = "approved" if approve else "rejected"
    audit.record(
        actor=actor,
        action=f"change.{'approve' if approve else 'reject'}",
        object_type="change",
        object_id=change.id,
        summary=f"Change {change.name} (version {change.version}) {verb}"
        + (f": {note}" if note else ""),
    )
    db.session.commit()
    return change


# -------------------------------------------------------------------- preview


@dataclass
class DevicePreview:
    device: Device
    #: the commands for the device, or None when its template did not render
    commands: str | None
    #: what really changes in its config (hier_config), None without a current config
    effective: str | None
    diff: str | None
    #: why there is no prediction (no backup yet, a template error)
    problem: str | None
    #: the commit of the config the prediction started from
    commit: str | None


def render_for(change: Change, device: Any) -> str:
    """The change's commands for ``device`` (a Device, or a unit's DeviceTarget whose tags
    are names); RenderError says why there are none."""
    context = rendering.device_context(
        name=device.name,
        host=device.host,
        platform=device.platform,
        tags=[t if isinstance(t, str) else t.name for t in device.tags],
    )
    return rendering.render(change.template, context, crypto.reveal_params(change.variables))


def preview(change_id: int) -> list[DevicePreview]:
    """Per target device: the rendered commands and what they change in the device's
    latest backed-up config. Nothing is sent anywhere."""
    from app.changes.preview import predict  # hier_config: loaded when a preview is asked

    change = get_change(change_id)
    devices = target_devices(change.target_tags, change.target_device_ids)
    latest = {
        row.device_id: row
        for row in db.session.scalars(
            select(LatestConfig).where(LatestConfig.device_id.in_([d.id for d in devices]))
        )
    }
    previews = []
    for device in devices:
        try:
            commands = render_for(change, device)
        except rendering.RenderError as exc:
            previews.append(DevicePreview(device, None, None, None, str(exc), None))
            continue
        config = latest.get(device.id)
        if config is None:
            previews.append(
                DevicePreview(
                    device,
                    commands,
                    None,
                    None,
                    "No backed-up config yet: back the device up to see what would change.",
                    None,
                )
            )
            continue
        predicted = predict(config.body, commands, device.platform)
        previews.append(
            DevicePreview(
                device, commands, predicted.effective, predicted.diff, None, config.commit
            )
        )
    return hidden(previews, secret_values(change))


def hidden(previews: list[DevicePreview], secrets: list[str]) -> list[DevicePreview]:
    """Previews fit to show: the secret variables' values as ``***``."""
    if not secrets:
        return previews
    return [
        dataclasses.replace(
            p,
            **{
                name: rendering.hide(value, secrets)
                for name in ("commands", "effective", "diff", "problem")
                if isinstance(value := getattr(p, name), str)
            },
        )
        for p in previews
    ]


def preview_view(items: list[DevicePreview]) -> dict[str, Any]:
    return {
        "items": [
            {
                "device": {"id": p.device.id, "name": p.device.name},
                "commands": p.commands,
                "effective": p.effective,
                "diff": p.diff,
                "problem": p.problem,
                "commit": p.commit,
            }
            for p in items
        ],
        "devices": len(items),
        "problems": sum(1 for p in items if p.commands is None),
        "unchanged": sum(1 for p in items if p.effective == ""),
    }
