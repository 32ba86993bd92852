"""The change form: what people type (targets, variables, checks as lines) to and from
the fields ``app/services/changes.py`` takes. Pure text handling, no database but the
device names looked up; a line that cannot be read is a field error naming it."""

from __future__ import annotations

import json
from typing import Any

import yaml
from sqlalchemy import select

from app.crypto import REDACTED
from app.errors import ValidationError
from app.extensions import db
from app.models import Change, Device
from app.services import changes

#: how a check reads as a line: ``[before:|after:] COMMAND ~ PATTERN`` (must show) or
#: ``!~`` (must not show)
MUST, MUST_NOT = " ~ ", " !~ "
WHEN_PREFIXES = ("before:", "after:")


def values_of(change: Change) -> dict[str, Any]:
    """A saved change as the form shows it (secret values as ***)."""
    devices = db.session.scalars(
        select(Device.name).where(Device.id.in_(change.target_device_ids)).order_by(Device.name)
    )
    return {
        "name": change.name,
        "description": change.description,
        "target_tags": " ".join(change.target_tags),
        "target_devices": " ".join(devices),
        "template": change.template,
        "variables": variables_text(changes.shown_variables(change)),
        "secret_variables": " ".join(change.secret_variables),
        "checks": checks_text(change.checks),
        "canary": change.canary,
        "wave_size": change.wave_size,
        "pause_seconds": change.pause_seconds,
        "max_failed": change.max_failed,
        "rollback": change.rollback,
        "reachability": change.reachability,
    }


def variables_text(variables: dict[str, Any]) -> str:
    return "\n".join(
        f"{name} = {value if isinstance(value, str) else json.dumps(value)}"
        for name, value in variables.items()
    )


def checks_text(checks: list[dict[str, Any]]) -> str:
    lines = []
    for check in checks:
        when = check.get("when", "both")
        prefix = f"{when}: " if when != "both" else ""
        sign = MUST_NOT if check["absent"] else MUST
        lines.append(f"{prefix}{check['command']}{sign}{check['expect']}")
    return "\n".join(lines)


def fields_of(values: dict[str, Any]) -> dict[str, Any]:
    """The form's text as the service's fields; ValidationError names the field and line."""
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {
        "name": values["name"],
        "description": values["description"],
        "template": values["template"],
        "target_tags": values["target_tags"].replace(",", " ").split(),
        "secret_variables": values["secret_variables"].replace(",", " ").split(),
        "rollback": values["rollback"],
        "reachability": bool(values["reachability"]),
    }
    for name in ("canary", "wave_size", "pause_seconds", "max_failed"):
        fields[name] = values[name]
    names = values["target_devices"].replace(",", " ").split()
    query = select(Device.name, Device.id).where(Device.name.in_(names))
    found = dict(db.session.execute(query).all())
    unknown = [n for n in names if n not in found]
    if unknown:
        errors["target_devices"] = f"No device named {', '.join(unknown[:5])}."
    fields["target_device_ids"] = sorted(set(found.values()))
    try:
        fields["variables"] = _variables(values["variables"])
    except ValueError as exc:
        errors["variables"] = str(exc)
    try:
        fields["checks"] = _checks(values["checks"])
    except ValueError as exc:
        errors["checks"] = str(exc)
    if errors:
        raise ValidationError(" ".join(errors.values()), fields=errors)
    return fields


def _variables(text: str) -> dict[str, Any]:
    """``name = value`` lines; a value in YAML/JSON form ([...], {...}, numbers) is read as
    such, anything else is text; a secret shown as *** stays ***, which keeps it."""
    variables: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, raw = line.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"Line {number}: write name = value.")
        raw = raw.strip()
        value: Any = raw
        if raw[:1] in ("[", "{") or raw in ("true", "false") or _is_number(raw):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                raise ValueError(f"Line {number}: {raw!r} is not a list or mapping.") from None
        variables[name.strip()] = REDACTED if raw == REDACTED else value
    return variables


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _checks(text: str) -> list[dict[str, Any]]:
    checks = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        when = "both"
        for prefix in WHEN_PREFIXES:
            if line.lower().startswith(prefix):
                when, line = prefix[:-1], line[len(prefix) :].strip()
        absent = MUST_NOT in line
        command, sep, expect = line.partition(MUST_NOT if absent else MUST)
        if not sep or not command.strip() or not expect.strip():
            raise ValueError(
                f"Line {number}: write COMMAND ~ PATTERN (must show) or COMMAND !~ PATTERN."
            )
        checks.append(
            {"command": command.strip(), "expect": expect.strip(), "absent": absent, "when": when}
        )
    return checks
