"""Inventory: devices and tags — validate, create, change, delete, import and export.

Devices carry tags; jobs target tags and devices; credentials match devices by tag.
Deleting a device keeps what it left behind readable (its run results keep the name,
its config history stays in the store); renaming one moves its file in the config
store, history kept, through ``on_rename``.

Imports take a CSV file or a Nornir SimpleInventory (hosts.yaml, with groups.yaml and
defaults.yaml), upsert by device name, and are all-or-nothing: one bad row and nothing
is written, unless ``partial=True`` asks for the good rows alone. Every bad row is
reported with its line. Exports produce files the imports take back unchanged.
"""

from __future__ import annotations

import csv
import functools
import io
import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, selectinload

from app import audit, platforms
from app.errors import Conflict, NotFound, ValidationError
from app.extensions import db
from app.models import (
    ACTIVE_STATUSES,
    Credential,
    Device,
    DeviceBackup,
    DeviceResult,
    Job,
    JobRun,
    Tag,
    User,
    credential_tags,
    device_tags,
    job_target_devices,
    job_target_tags,
    utcnow,
)
from app.services import credential_scope, get_row

logger = logging.getLogger(__name__)

#: driver backends a device may name; a new backend adds its name here
KNOWN_DRIVERS: tuple[str, ...] = ("netmiko",)
DEFAULT_DRIVER = "netmiko"
DEFAULT_PORT = 22
DEVICE_FIELDS = ("name", "host", "port", "platform", "driver", "enabled", "notes")
CSV_COLUMNS = ("name", "host", "port", "platform", "driver", "tags", "enabled", "notes")
CSV_REQUIRED = ("name", "host", "platform")
#: Nornir/NAPALM platform names and the netmiko device types they mean
NORNIR_PLATFORMS = platforms.NAPALM
PLATFORM_EXAMPLES = "e.g. cisco_ios, arista_eos, juniper_junos"
MAX_NOTES = 10_000
MAX_TAG = 64

NAME_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_TAG_SPLIT_RE = re.compile(r"[;|,]")
_TAG_FORBIDDEN = frozenset(";|,")
#: A CSV cell a spreadsheet would run as a formula (after any quotes a cell starts with).
_FORMULA_RE = re.compile(r"^'*[=+\-@\t\r]")
_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})


class _Invalid(Exception):
    """One field's problem; its text is what the person reads."""


# -------------------------------------------------------------------- validation


def netmiko_platforms() -> frozenset[str]:
    """Every netmiko device type a device may name (``autodetect`` is not a type)."""
    return platforms.known_platforms()


def is_host(value: str) -> bool:
    """A hostname (RFC 1123, underscores tolerated) or an IPv4/IPv6 address."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    # An all-digit last label is a mistyped address (10.0.0.256), not a name.
    return all(_HOST_LABEL_RE.match(label) for label in labels) and not labels[-1].isdigit()


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _clean_name(value: Any) -> str:
    name = _text(value)
    if not name:
        raise _Invalid("A device name is required.")
    if not NAME_RE.match(name):
        raise _Invalid(
            "A device name is 1-128 characters: letters, digits, '.', '_', ':', '/' or '-' "
            "(no spaces)."
        )
    return name


def _clean_host(value: Any) -> str:
    host = _text(value)
    if not host:
        raise _Invalid("A host is required: a hostname or an IPv4/IPv6 address.")
    if not is_host(host):
        raise _Invalid(f"Host {host[:80]!r} is not a hostname or an IPv4/IPv6 address.")
    return host


def _clean_port(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_PORT
    if isinstance(value, bool):
        raise _Invalid("Port must be a whole number from 1 to 65535.")
    try:
        port = int(str(value).strip())
    except ValueError:
        raise _Invalid("Port must be a whole number from 1 to 65535.") from None
    if not 1 <= port <= 65535:
        raise _Invalid("Port must be a whole number from 1 to 65535.")
    return port


def _clean_platform(value: Any) -> str:
    platform = _text(value).lower()
    if not platform:
        raise _Invalid(f"A platform is required: a netmiko device type, {PLATFORM_EXAMPLES}.")
    if platform not in netmiko_platforms():
        raise _Invalid(_unknown_platform(platform[:64]))
    return platform


@functools.lru_cache(maxsize=1024)  # a file of many rows often repeats one wrong name
def _unknown_platform(platform: str) -> str:
    """What is said of a platform that is no netmiko device type: the one it most likely
    means, and the valid ones (the profiled ones by name, the count of the others)."""
    valid = netmiko_platforms()
    guess = platforms.suggest(platform, valid)
    return (
        f"Unknown platform {platform!r}."
        + (f" Did you mean {guess!r}?" if guess else "")
        + f" Valid: {', '.join(platforms.PROFILED)}, or another of netmiko's {len(valid)} "
        "device types (the Import devices page lists them all)."
    )


def _clean_driver(value: Any) -> str:
    driver = _text(value).lower() or DEFAULT_DRIVER
    if driver not in KNOWN_DRIVERS:
        raise _Invalid(f"Unknown driver {driver[:32]!r}; known: {', '.join(KNOWN_DRIVERS)}.")
    return driver


def _clean_enabled(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text == "" or text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Invalid("Enabled must be true or false.")


def _clean_notes(value: Any) -> str:
    notes = "" if value is None else str(value).strip()
    if len(notes) > MAX_NOTES:
        raise _Invalid(f"Notes are at most {MAX_NOTES} characters.")
    return notes


def split_tags(value: str | Iterable[Any] | None) -> list[str]:
    """Tag names from a list, or from a string separated by ';', '|' or ','."""
    if value is None:
        return []
    items = _TAG_SPLIT_RE.split(value) if isinstance(value, str) else [_text(v) for v in value]
    return [item.strip() for item in items if item and item.strip()]


def clean_tag_names(value: str | Iterable[Any] | None) -> list[str]:
    """Sorted, unique, valid tag names; a ValidationError names the bad ones."""
    names = sorted(set(split_tags(value)))
    for name in names:
        if len(name) > MAX_TAG:
            raise ValidationError(
                f"Tag {name[:20]!r}... is too long (at most {MAX_TAG} characters).",
                fields={"tags": f"At most {MAX_TAG} characters per tag."},
            )
        if "\x00" in name:
            raise ValidationError(
                "A tag name cannot contain a NUL character.",
                fields={"tags": "No NUL characters."},
            )
        if _TAG_FORBIDDEN & set(name):
            raise ValidationError(
                f"Tag {name!r} cannot contain ',', ';' or '|'.",
                fields={"tags": "Tags cannot contain ',', ';' or '|'."},
            )
    return names


_CLEANERS = {
    "name": _clean_name,
    "host": _clean_host,
    "port": _clean_port,
    "platform": _clean_platform,
    "driver": _clean_driver,
    "enabled": _clean_enabled,
    "notes": _clean_notes,
}
_DEFAULTS: dict[str, Any] = {
    "port": DEFAULT_PORT,
    "driver": DEFAULT_DRIVER,
    "enabled": True,
    "notes": "",
}


def validate_device(fields: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Cleaned device fields; every problem at once, in ``ValidationError.fields``.

    ``partial`` (an update): only the fields given are checked. Otherwise name, host and
    platform are required and port, driver, enabled and notes take their defaults.
    ``tags`` (a list, or a string separated by ';', '|' or ',') comes back as a sorted list.
    """
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for key in sorted(set(fields) - set(DEVICE_FIELDS) - {"tags"}):
        errors[key] = f"Unknown device field {key!r}."
    for key in DEVICE_FIELDS:
        if key not in fields:
            if partial:
                continue
            if key in _DEFAULTS:
                clean[key] = _DEFAULTS[key]
                continue
        try:
            clean[key] = _CLEANERS[key](fields.get(key))
        except _Invalid as exc:
            errors[key] = str(exc)
    if "tags" in fields or not partial:
        try:
            clean["tags"] = clean_tag_names(fields.get("tags"))
        except ValidationError as exc:
            errors["tags"] = exc.message
    if errors:
        raise ValidationError(" ".join(errors.values()), fields=errors)
    return clean


# ------------------------------------------------------------------------ queries


def list_devices(
    *,
    tag: str | None = None,
    search: str | None = None,
    enabled: bool | None = None,
    platform: str | None = None,
    held: bool | None = None,
    backup: str | None = None,
    stale_hours: int = 24,
    sort: str = "name",
) -> Select[tuple[Device]]:
    """Devices filtered by a tag, a text (name, host, platform, notes), state, platform,
    and whether their credentials are on hold; ordered by ``sort`` (see DEVICE_SORTS)."""
    query = select(Device).options(selectinload(Device.tags))
    if sort == "name":
        query = query.order_by(Device.name)
    else:
        key = device_sort_key(sort)
        query = query.outerjoin(DeviceBackup, DeviceBackup.device_id == Device.id)
        query = query.order_by(key.desc() if sort.startswith("-") else key, Device.name)
    if tag:
        query = query.where(Device.tags.any(Tag.name == tag))
    if search and search.strip():
        pattern = "%" + _escape_like(search.strip()) + "%"
        query = query.where(
            or_(
                Device.name.ilike(pattern, escape="\\"),
                Device.host.ilike(pattern, escape="\\"),
                Device.platform.ilike(pattern, escape="\\"),
                Device.notes.ilike(pattern, escape="\\"),
            )
        )
    if enabled is not None:
        query = query.where(Device.enabled.is_(enabled))
    if platform:
        query = query.where(Device.platform == platform)
    if held is not None:
        query = query.where(
            Device.credential_hold.isnot(None) if held else Device.credential_hold.is_(None)
        )
    if backup:
        query = query.where(backup_condition(backup, stale_hours))
    return query


#: the device list's orders: by name, or by last successful backup (never first) either way
DEVICE_SORTS = ("name", "last_backup", "-last_backup")
#: stands for "never" in the last-backup order (before every real backup)
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def device_sort_key(sort: str) -> Any:
    """The column a non-name order sorts on (the query must outer-join DeviceBackup)."""
    if sort not in DEVICE_SORTS[1:]:
        raise ValidationError(
            f"Unknown order {sort!r}.", fields={"sort": "name, last_backup or -last_backup"}
        )
    return func.coalesce(DeviceBackup.last_success_at, _NEVER)


def device_cursor(device: Device, sort: str) -> str:
    """Where a keyset page of ``sort`` ends at ``device`` (for ``after``/``before``)."""
    if sort == "name":
        return device.name
    success = device.backup.last_success_at if device.backup else None
    return f"{(success or _NEVER).isoformat()}|{device.name}"


def page_from(query: Select[tuple[Device]], sort: str, cursor: str, *, back: bool) -> Any:
    """``query`` limited to the devices after (or, ``back``, before) ``cursor`` in
    ``sort``'s order, and ordered from that cursor outwards."""
    descending = sort.startswith("-") != back
    if sort == "name":
        where = Device.name < cursor if back else Device.name > cursor
        order: tuple[Any, ...] = (Device.name.desc() if back else Device.name,)
        return query.where(where).order_by(None).order_by(*order)
    at_text, _, name = cursor.partition("|")
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError:
        raise ValidationError("Bad page cursor.", fields={"after": "Bad cursor."}) from None
    key = device_sort_key(sort)
    # the key runs one way, the name (the tie-break) ascending within it, both reversed back
    first = key < at if descending else key > at
    tie = Device.name < name if back else Device.name > name
    where = or_(first, and_(key == at, tie))
    order = (
        key.desc() if descending else key,
        Device.name.desc() if back else Device.name,
    )
    return query.where(where).order_by(None).order_by(*order)


#: latest backup statuses that are not failures of the device (the run was stopped)
_NOT_FAILING = ("success", "cancelled", "skipped")


def backup_condition(state: str, stale_hours: int = 24) -> Any:
    """The devices whose backups are in ``state``: fresh (a success within
    ``stale_hours``), stale (none within), failing (the latest one failed), never."""
    since = utcnow() - timedelta(hours=stale_hours)
    backup = aliased(DeviceBackup)  # the list may join device_backups for its order
    has_backup = select(backup.device_id).where(backup.device_id == Device.id)
    if state == "never":
        return ~has_backup.exists()
    if state == "fresh":
        return has_backup.where(backup.last_success_at >= since).exists()
    if state == "stale":
        return ~has_backup.where(backup.last_success_at >= since).exists()
    if state == "failing":
        return has_backup.where(backup.last_status.not_in(_NOT_FAILING)).exists()
    raise ValidationError(
        f"Unknown backup state {state!r}.", fields={"backup": "fresh, stale, failing or never"}
    )


def backup_health(stale_hours: int = 24) -> dict[str, int]:
    """How many enabled devices are in each backup state (fresh and stale split every
    device; failing and never are among the stale ones or beside them)."""
    counts = {}
    for state in ("fresh", "stale", "failing", "never"):
        counts[state] = (
            db.session.scalar(
                select(func.count(Device.id)).where(
                    Device.enabled.is_(True), backup_condition(state, stale_hours)
                )
            )
            or 0
        )
    return counts


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class TargetPreview:
    """What a job's targets match now: the device count, and the tags and names that
    match nothing (with the closest known name, if any)."""

    count: int
    unknown_tags: list[tuple[str, str | None]]
    unknown_devices: list[tuple[str, str | None]]


def preview_targets(tag_names: Iterable[str], device_names: Iterable[str]) -> TargetPreview:
    """How many enabled devices a job with these targets would work on."""
    import difflib

    tags = [t for t in dict.fromkeys(tag_names) if t]
    names = [n for n in dict.fromkeys(device_names) if n]
    known_tags = set(db.session.scalars(select(Tag.name).where(Tag.name.in_(tags))))
    known_devices = set(db.session.scalars(select(Device.name).where(Device.name.in_(names))))

    def closest(word: str, kind: type[Tag] | type[Device]) -> str | None:
        # tags are few: all of them; devices may be many: those with the same first letter
        query = select(kind.name).limit(10_000)
        if kind is Device:
            query = query.where(kind.name.ilike(_escape_like(word[:1]) + "%", escape="\\"))
        found = difflib.get_close_matches(word, list(db.session.scalars(query)), n=1, cutoff=0.6)
        return found[0] if found else None

    either = []
    if tags:
        either.append(Device.tags.any(Tag.name.in_(tags)))
    if names:
        either.append(Device.name.in_(names))
    count = 0
    if either:
        matched = select(func.count(Device.id)).where(Device.enabled.is_(True), or_(*either))
        count = db.session.scalar(matched) or 0
    return TargetPreview(
        count=count,
        unknown_tags=[(t, closest(t, Tag)) for t in tags if t not in known_tags],
        unknown_devices=[(n, closest(n, Device)) for n in names if n not in known_devices],
    )


def get_device(device_id: int) -> Device:
    return get_row(Device, device_id, "device")


def get_by_name(name: str) -> Device:
    device = db.session.scalar(select(Device).where(Device.name == name))
    if device is None:
        raise NotFound(f"No device named {name!r}.")
    return device


def snapshot(device: Device) -> dict[str, Any]:
    """What the audit trail records of a device."""
    return {
        "name": device.name,
        "host": device.host,
        "port": device.port,
        "platform": device.platform,
        "driver": device.driver,
        "enabled": device.enabled,
        "notes": device.notes,
        "tags": [t.name for t in device.tags],
    }


def active_runs_targeting(device: Device) -> list[JobRun]:
    """Runs in flight that work (or will work) on ``device``, as the runner picks devices.

    A run restricted to device ids targets those; any other run targets its job's
    devices and the devices sharing one of its job's tags.
    """
    by_job_device = select(job_target_devices.c.job_id).where(
        job_target_devices.c.device_id == device.id
    )
    by_job_tag = (
        select(job_target_tags.c.job_id)
        .join(device_tags, device_tags.c.tag_id == job_target_tags.c.tag_id)
        .where(device_tags.c.device_id == device.id)
    )
    restricted = func.coalesce(func.jsonb_typeof(JobRun.device_ids), "null") == "array"
    return list(
        db.session.scalars(
            select(JobRun)
            .where(
                JobRun.status.in_([s.value for s in ACTIVE_STATUSES]),
                or_(
                    and_(restricted, JobRun.device_ids.contains([device.id])),
                    and_(
                        ~restricted,
                        or_(JobRun.job_id.in_(by_job_device), JobRun.job_id.in_(by_job_tag)),
                    ),
                ),
            )
            .order_by(JobRun.id)
        )
    )


# ---------------------------------------------------------------------- devices


def create_device(
    *, actor: User | str | None, tags: Iterable[str] | None = None, **fields: Any
) -> Device:
    """Validate and save a device, with an audit entry; commits. Nothing saved on error."""
    try:
        return _create_device(actor=actor, tags=tags, fields=fields)
    except BaseException:
        db.session.rollback()
        raise


def _create_device(
    *, actor: User | str | None, tags: Iterable[str] | None, fields: dict[str, Any]
) -> Device:
    clean = validate_device({**fields, "tags": list(tags or [])})
    _refuse_taken_name(clean["name"])
    device = Device(**{k: clean[k] for k in DEVICE_FIELDS})
    device.tags = ensure_tags(clean["tags"])
    db.session.add(device)
    _flush_unique(clean["name"])
    audit.record(
        actor=actor,
        action="create",
        object_type="device",
        object_id=device.id,
        summary=f"created device {device.name} ({device.host}, {device.platform})",
        after=snapshot(device),
    )
    credential_scope.hold_if_widened(device, None, actor)
    db.session.commit()
    logger.info("Device %s created", device.name)
    return device


def _refuse_taken_name(name: str, *, other_than: int | None = None) -> None:
    query = select(Device.id).where(Device.name == name)
    if other_than is not None:
        query = query.where(Device.id != other_than)
    if db.session.scalar(query) is not None:
        raise Conflict(f"A device named {name!r} already exists.")


def _flush_unique(name: str) -> None:
    try:
        db.session.flush()
    except IntegrityError:  # another process took the name since we looked
        raise Conflict(f"A device named {name!r} already exists.") from None


def update_device(device_id: int, *, actor: User | str | None, **changes: Any) -> Device:
    """Change some fields of a device (``tags`` replaces its tags); commits.

    A rename moves the device's file in the config store (history kept); if the store
    refuses, nothing changes. On any error nothing is saved.
    """
    device = get_device(device_id)
    old_name = new_name = device.name
    moved = False
    try:
        clean = validate_device(changes, partial=True)
        before = snapshot(device)
        destination = credential_scope.destination(device)
        if "name" in clean and clean["name"] != old_name:
            _refuse_taken_name(clean["name"], other_than=device.id)
        if "tags" in clean:  # before the attributes change: no autoflush of a taken name
            device.tags = ensure_tags(clean["tags"])
        for key in DEVICE_FIELDS:
            if key in clean:
                setattr(device, key, clean[key])
        _flush_unique(device.name)
        after = snapshot(device)
        if after == before:
            db.session.rollback()
            return device
        if device.name != old_name:
            new_name = device.name
            on_rename(old_name, new_name)
            moved = True
        audit.record(
            actor=actor,
            action="update",
            object_type="device",
            object_id=device.id,
            summary=f"changed device {device.name}"
            + (f" (renamed from {old_name})" if moved else ""),
            before=before,
            after=after,
        )
        credential_scope.hold_if_widened(device, destination, actor)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        if moved:
            _undo_rename(old_name, new_name)
        raise
    return device


def on_rename(old_name: str, new_name: str) -> None:
    """Move a renamed device's file in the config store, history kept (inside the caller's
    transaction, under the store's advisory lock). A store failure becomes a Conflict."""
    from app import config_store

    store = config_store.store_for(current_app)
    try:
        store.rename(old_name, new_name, lock=config_store.advisory_lock(db.session))
    except config_store.ConfigStoreError as exc:
        raise Conflict(
            f"Device {old_name} was not renamed: its config history could not move to "
            f"{new_name} ({exc})."
        ) from exc


def _undo_rename(old_name: str, new_name: str) -> None:
    """The database refused a rename the store already made: move the file back."""
    try:
        on_rename(new_name, old_name)
    except Exception:
        logger.exception("Could not move the config of %s back to %s", new_name, old_name)
    finally:
        db.session.rollback()


def delete_device(device_id: int, *, actor: User | str | None) -> None:
    """Delete a device; refused while a run in flight targets it. Commits.

    Its run results stay (device id cleared, name kept); its config history stays in
    the store.
    """
    device = get_device(device_id)
    try:
        busy = active_runs_targeting(device)
        if busy:
            raise Conflict(_busy_message(device.name, busy))
        before = snapshot(device)
        audit.record(
            actor=actor,
            action="delete",
            object_type="device",
            object_id=device.id,
            summary=f"deleted device {device.name}",
            before=before,
        )
        db.session.delete(device)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    logger.info("Device %s deleted", before["name"])


def _busy_message(name: str, runs: list[JobRun]) -> str:
    if len(runs) == 1:
        run = runs[0]
        return (
            f"Device {name} is targeted by run #{run.id} ({run.status.lower()}); cancel it first."
        )
    listed = ", ".join(f"#{r.id} ({r.status.lower()})" for r in runs[:5])
    more = f" and {len(runs) - 5} more" if len(runs) > 5 else ""
    return f"Device {name} is targeted by runs {listed}{more}; cancel them first."


# -------------------------------------------------------------------------- tags


def ensure_tags(names: Iterable[str]) -> list[Tag]:
    """The tags of these names, sorted, creating the missing ones (safe against a
    concurrent creator). Does not commit."""
    wanted = clean_tag_names(list(names))
    if not wanted:
        return []
    db.session.execute(
        pg_insert(Tag)
        .values([{"name": n} for n in wanted])
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return list(db.session.scalars(select(Tag).where(Tag.name.in_(wanted)).order_by(Tag.name)))


def list_tags() -> Select[tuple[Tag, int]]:
    """Every tag with the number of devices carrying it, by name."""
    return (
        select(Tag, func.count(device_tags.c.device_id).label("device_count"))
        .outerjoin(device_tags, device_tags.c.tag_id == Tag.id)
        .group_by(Tag.id)
        .order_by(Tag.name)
    )


def get_tag(tag_id: int) -> Tag:
    return get_row(Tag, tag_id, "tag")


def get_tag_by_name(name: str) -> Tag:
    tag = db.session.scalar(select(Tag).where(Tag.name == name))
    if tag is None:
        raise NotFound(f"No tag named {name!r}.")
    return tag


def update_tag(
    tag_id: int,
    *,
    actor: User | str | None,
    name: str | None = None,
    description: str | None = None,
) -> Tag:
    """Rename a tag or change its description; devices, jobs and credentials follow."""
    tag = get_tag(tag_id)
    try:
        before = {"name": tag.name, "description": tag.description}
        if name is not None:
            names = clean_tag_names([name])
            if len(names) != 1:
                raise ValidationError("A tag needs a name.", fields={"name": "Required."})
            new_name = names[0]
            if new_name != tag.name:
                credential_scope.refuse_tag_change(tag, actor, "rename")
                taken = db.session.scalar(select(Tag.id).where(Tag.name == new_name))
                if taken is not None:
                    raise Conflict(f"A tag named {new_name!r} already exists.")
                tag.name = new_name
        if description is not None:
            tag.description = description.strip()
        try:
            db.session.flush()
        except IntegrityError:
            raise Conflict(f"A tag named {tag.name!r} already exists.") from None
        after = {"name": tag.name, "description": tag.description}
        if after != before:
            audit.record(
                actor=actor,
                action="update",
                object_type="tag",
                object_id=tag.id,
                summary=f"changed tag {before['name']}"
                + (f" (renamed to {tag.name})" if tag.name != before["name"] else ""),
                before=before,
                after=after,
            )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return tag


def rename_tag(tag_id: int, new_name: str, *, actor: User | str | None) -> Tag:
    return update_tag(tag_id, actor=actor, name=new_name)


def delete_tag(tag_id: int, *, actor: User | str | None, force: bool = False) -> None:
    """Delete a tag (devices lose it). Refused while jobs target it or credentials carry
    it — their meaning would change silently — unless ``force``. Commits."""
    tag = get_tag(tag_id)
    try:
        credential_scope.refuse_tag_change(tag, actor, "delete")
        if not force:
            jobs = list(
                db.session.scalars(
                    select(Job.name)
                    .join(job_target_tags, job_target_tags.c.job_id == Job.id)
                    .where(job_target_tags.c.tag_id == tag.id)
                    .order_by(Job.name)
                )
            )
            creds = list(
                db.session.scalars(
                    select(Credential.name)
                    .join(credential_tags, credential_tags.c.credential_id == Credential.id)
                    .where(credential_tags.c.tag_id == tag.id)
                    .order_by(Credential.name)
                )
            )
            users = [f"job {n}" for n in jobs] + [f"credential {n}" for n in creds]
            if users:
                raise Conflict(
                    f"Tag {tag.name} is used by {', '.join(users)}; remove it from them first."
                )
        count = db.session.scalar(
            select(func.count()).select_from(device_tags).where(device_tags.c.tag_id == tag.id)
        )
        audit.record(
            actor=actor,
            action="delete",
            object_type="tag",
            object_id=tag.id,
            summary=f"deleted tag {tag.name} (carried by {count} device(s))",
            before={"name": tag.name, "description": tag.description},
        )
        db.session.delete(tag)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


# ------------------------------------------------------------------------ import


@dataclass(frozen=True)
class RowError:
    """One bad row of an import: its line in the file, its device name if it had one."""

    line: int
    name: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" ({self.name})" if self.name else "")
        return f"{where}: {self.message}"


@dataclass
class ImportReport:
    """What an import did: devices created and updated, and every bad row."""

    created: int = 0
    updated: int = 0
    errors: list[RowError] = field(default_factory=list)
    #: rows naming an existing device that already matched them
    unchanged: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _Row:
    line: int
    name: str
    #: cleaned values of every field (defaults filled in), tags included
    clean: dict[str, Any]
    #: the fields the file gave; an existing device keeps the others
    given: frozenset[str]


def _check_row(
    line: int, raw: dict[str, Any], given: Iterable[str], seen: dict[str, int]
) -> _Row | RowError:
    name = _text(raw.get("name")) or None
    try:
        clean = validate_device(raw)
    except ValidationError as exc:
        return RowError(line, name, exc.message)
    if clean["name"] in seen:
        return RowError(
            line, name, f"Duplicate name {clean['name']!r} (first on line {seen[clean['name']]})."
        )
    seen[clean["name"]] = line
    return _Row(line, clean["name"], clean, frozenset(given) | {"name"})


def _apply_rows(
    rows: list[_Row], errors: list[RowError], *, partial: bool, actor: Any, source: str
) -> ImportReport:
    errors = sorted(errors, key=lambda e: e.line)
    if errors and not partial:
        db.session.rollback()
        return ImportReport(errors=errors)
    report = ImportReport(errors=errors)
    try:
        existing = {
            d.name: d
            for d in db.session.scalars(
                select(Device)
                .where(Device.name.in_([r.name for r in rows]))
                .options(selectinload(Device.tags))
            )
        }
        tags = {t.name: t for t in ensure_tags({n for r in rows for n in r.clean["tags"]})}
        scope = credential_scope.credentials_by_tag()
        created: list[Device] = []
        for row in rows:
            device = existing.get(row.name)
            if device is None:
                device = Device(**{k: row.clean[k] for k in DEVICE_FIELDS})
                device.tags = [tags[n] for n in row.clean["tags"]]
                db.session.add(device)
                created.append(device)
                continue
            before = snapshot(device)
            destination = credential_scope.destination(device, scope)
            for key in DEVICE_FIELDS:
                if key in row.given:
                    setattr(device, key, row.clean[key])
            if "tags" in row.given:
                device.tags = [tags[n] for n in row.clean["tags"]]
            after = snapshot(device)
            if after == before:
                report.unchanged += 1
                continue
            report.updated += 1
            audit.record(
                actor=actor,
                action="update",
                object_type="device",
                object_id=device.id,
                summary=f"changed device {device.name} ({source} import)",
                before=before,
                after=after,
            )
            credential_scope.hold_if_widened(device, destination, actor, scope)
        db.session.flush()  # one flush for every new device: their ids, for the trail
        report.created = len(created)
        for device in created:
            audit.record(
                actor=actor,
                action="create",
                object_type="device",
                object_id=device.id,
                summary=f"created device {device.name} ({source} import)",
                after=snapshot(device),
            )
            credential_scope.hold_if_widened(device, None, actor, scope)
        audit.record(
            actor=actor,
            action="import",
            object_type="device",
            summary=f"{source} import: {report.created} created, {report.updated} updated, "
            f"{report.unchanged} unchanged, {len(report.errors)} bad row(s) skipped",
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    logger.info(
        "%s import: %s created, %s updated, %s bad rows",
        source,
        report.created,
        report.updated,
        len(report.errors),
    )
    return report


#: files to start an import from, each importing cleanly: "devices.csv" for
#: ``import_csv``, "hosts.yaml" with its "groups.yaml" for ``import_nornir`` (the same five
#: devices). Their hosts are documentation addresses (192.0.2.0/24) and the loopback.
SAMPLE_FILES: dict[str, str] = {
    "devices.csv": (
        "name,host,port,platform,driver,tags,enabled,notes\n"
        "core-sw1,192.0.2.11,22,cisco_ios,netmiko,core;dc1,true,Core switch in rack A1\n"
        "core-sw2,192.0.2.12,22,cisco_xe,netmiko,core;dc1,true,\n"
        'edge-r1,192.0.2.21,22,juniper_junos,netmiko,edge;dc1,true,"Internet edge, uplink 1"\n'
        "leaf1,192.0.2.31,2222,arista_eos,,leaf;dc2,,\n"
        'lab-nx1,127.0.0.1,10022,cisco_nxos,netmiko,lab,false,"Lab emulator, off until needed"\n'
    ),
    "hosts.yaml": (
        "# A Nornir SimpleInventory: one key per device, its name in Rookery.\n"
        "# hostname, port and platform come from the host, else its groups (groups.yaml),\n"
        "# else defaults.yaml. Groups become tags; usernames and passwords are ignored.\n"
        "core-sw1:\n"
        "  hostname: 192.0.2.11\n"
        "  groups: [core]\n"
        "  data:\n"
        "    rookery_notes: Core switch in rack A1\n"
        "core-sw2:\n"
        "  hostname: 192.0.2.12\n"
        "  platform: cisco_xe  # a netmiko device type, or ios, eos, junos, nxos, iosxr\n"
        "  groups: [core]\n"
        "edge-r1:\n"
        "  hostname: 192.0.2.21\n"
        "  platform: junos\n"
        "  groups: [edge]\n"
        "  data:\n"
        "    rookery_notes: Internet edge, uplink 1\n"
        "leaf1:\n"
        "  hostname: 192.0.2.31\n"
        "  port: 2222\n"
        "  platform: eos\n"
        "  groups: [dc2]\n"
        "  data:\n"
        "    tags: [leaf]\n"
        "lab-nx1:\n"
        "  hostname: 127.0.0.1\n"
        "  port: 10022\n"
        "  platform: nxos\n"
        "  data:\n"
        "    tags: [lab]\n"
        "    rookery_enabled: false\n"
        "    rookery_notes: Lab emulator, off until needed\n"
    ),
    "groups.yaml": (
        "# Groups of the sample hosts.yaml: each may set hostname, port and platform for its\n"
        "# hosts, and name parent groups (their tags too).\n"
        "dc1: {}\n"
        "dc2: {}\n"
        "core:\n"
        "  platform: ios\n"
        "  groups: [dc1]\n"
        "edge:\n"
        "  groups: [dc1]\n"
    ),
}


def import_csv(
    text: str | bytes, *, partial: bool = False, actor: User | str | None
) -> ImportReport:
    """Upsert devices from CSV (header: name,host,port,platform,driver,tags,enabled,notes).

    name, host and platform are required columns; the others optional (a device that
    exists keeps the values of the columns the file lacks). Tags are separated by ';',
    '|' or ','. A UTF-8 BOM and CRLF line ends are fine. Lines are counted as in the
    file, the header being line 1. Any bad row and nothing is imported, unless
    ``partial``: then the good rows are.
    """
    rows, errors = _parse_csv(text)
    return _apply_rows(rows, errors, partial=partial, actor=actor, source="CSV")


def _parse_csv(text: str | bytes) -> tuple[list[_Row], list[RowError]]:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return [], [RowError(1, None, f"The file is not UTF-8 text (byte {exc.start}).")]
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header: list[str] | None = None
    rows: list[_Row] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    consumed = 0
    try:
        for cells in reader:
            line, consumed = consumed + 1, reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if header is None:
                header = [c.strip().lower() for c in cells]
                problem = _header_problem(header)
                if problem:
                    return [], [RowError(line, None, problem)]
                continue
            extra = [c for c in cells[len(header) :] if c.strip()]
            if extra:
                errors.append(
                    RowError(
                        line,
                        _text(cells[header.index("name")]) or None,
                        f"The row has {len(cells)} values; the header has {len(header)} columns.",
                    )
                )
                continue
            raw = {
                col: (csv_uncell(cells[i]) if i < len(cells) else "")
                for i, col in enumerate(header)
            }
            result = _check_row(line, raw, header, seen)
            (errors if isinstance(result, RowError) else rows).append(result)
    except csv.Error as exc:
        errors.append(RowError(consumed + 1, None, f"Unreadable CSV: {exc}."))
        return [], errors
    if header is None:
        return [], [RowError(1, None, f"The file is empty; expected {','.join(CSV_COLUMNS)}.")]
    return rows, errors


def _header_problem(header: list[str]) -> str | None:
    problems = []
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        problems.append(
            f"Unknown column(s): {', '.join(repr(c[:40]) for c in unknown)} "
            f"(columns: {','.join(CSV_COLUMNS)})."
        )
    doubled = sorted({c for c in header if header.count(c) > 1 and c in CSV_COLUMNS})
    if doubled:
        problems.append(f"Column(s) given twice: {', '.join(doubled)}.")
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        problems.append(f"Missing column(s): {', '.join(missing)}.")
    return " ".join(problems) or None


class _FileError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _yaml_entries(text: str | bytes | None, filename: str) -> list[tuple[int, str, Any]]:
    """(line, key, value) of each top-level entry of a YAML mapping, duplicates kept.

    Errors never quote the file: a Nornir inventory may hold passwords.
    """
    if text is None:
        return []
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _FileError(1, f"{filename} is not UTF-8 text.") from None
    import yaml  # here, not at the top: a worker imports this module, never YAML

    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character: refused before parsing
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise _FileError(
            line, f"{filename} holds a character YAML does not allow (line {line})."
        ) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return []
        if not isinstance(node, yaml.MappingNode):
            raise _FileError(node.start_mark.line + 1, f"{filename} is not a mapping of names.")
        loader.flatten_mapping(node)
        return [
            (
                key_node.start_mark.line + 1,
                _text(loader.construct_object(key_node, deep=True)),
                loader.construct_object(value_node, deep=True),
            )
            for key_node, value_node in node.value
        ]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "unreadable"
        raise _FileError(line, f"{filename} is not valid YAML (line {line}: {problem}).") from None
    finally:
        loader.dispose()


def import_nornir(
    hosts_yaml: str | bytes,
    groups_yaml: str | bytes | None = None,
    defaults_yaml: str | bytes | None = None,
    *,
    partial: bool = False,
    actor: User | str | None,
) -> ImportReport:
    """Upsert devices from a Nornir SimpleInventory.

    Each host key is a device name; hostname, port and platform come from the host, else
    its groups (depth first, parents included, in order), else the defaults — Nornir's
    own rule. Platforms ios, eos, junos, nxos and iosxr become netmiko's cisco_ios,
    arista_eos, juniper_junos, cisco_nxos and cisco_xr. Tags are the host's groups and
    their parents, plus ``data.tags`` / ``data.rookery_tags``; ``data.rookery_driver``,
    ``data.rookery_enabled`` and ``data.rookery_notes`` set the rest (else a device that
    exists keeps them). Errors name the line of the host's key. Credentials in the
    files are ignored.
    """
    errors: list[RowError] = []
    try:
        defaults_entries = _yaml_entries(defaults_yaml, "defaults.yaml")
        group_entries = _yaml_entries(groups_yaml, "groups.yaml")
        host_entries = _yaml_entries(hosts_yaml, "hosts.yaml")
    except _FileError as exc:
        return _apply_rows(
            [], [RowError(exc.line, None, exc.message)], partial=False, actor=actor, source="Nornir"
        )
    defaults = {key: value for _, key, value in defaults_entries}
    groups: dict[str, dict[str, Any]] = {}
    for line, name, value in group_entries:
        if name in groups:
            errors.append(RowError(line, name, f"groups.yaml line {line}: group {name} twice."))
        elif value is not None and not isinstance(value, dict):
            errors.append(RowError(line, name, f"groups.yaml line {line}: not a mapping."))
        else:
            groups[name] = value or {}
    if errors:  # hosts cannot be judged against broken groups
        return _apply_rows([], errors, partial=False, actor=actor, source="Nornir")
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    for line, name, value in host_entries:
        try:
            raw, given = _nornir_host(name, value, groups, defaults)
        except _Invalid as exc:
            errors.append(RowError(line, name or None, str(exc)))
            continue
        result = _check_row(line, raw, given, seen)
        (errors if isinstance(result, RowError) else rows).append(result)
    return _apply_rows(rows, errors, partial=partial, actor=actor, source="Nornir")


def _group_names(element: Mapping[str, Any]) -> list[str]:
    value = element.get("groups") or []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise _Invalid("groups must be a list of group names.")
    return [_text(v) for v in value]


def _expand_groups(
    direct: list[str], groups: Mapping[str, Mapping[str, Any]], path: tuple[str, ...] = ()
) -> list[str]:
    """The groups, each followed by its parents (depth first), first occurrence kept."""
    order: list[str] = []
    for name in direct:
        if name in path:
            raise _Invalid(f"Groups form a cycle: {' -> '.join([*path, name])}.")
        if name not in groups:
            raise _Invalid(f"Unknown group {name!r} (not in groups.yaml).")
        for found in [name, *_expand_groups(_group_names(groups[name]), groups, (*path, name))]:
            if found not in order:
                order.append(found)
    return order


def _nornir_host(
    name: str, value: Any, groups: Mapping[str, Mapping[str, Any]], defaults: Mapping[str, Any]
) -> tuple[dict[str, Any], set[str]]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _Invalid("A host is a mapping (hostname, port, platform, groups, data).")
    chain = [value, *(groups[g] for g in _expand_groups(_group_names(value), groups)), defaults]

    def attribute(key: str) -> Any:
        return next((e[key] for e in chain if e.get(key) is not None), None)

    def data(key: str) -> Any:
        for element in chain:
            bag = element.get("data")
            if isinstance(bag, dict) and bag.get(key) is not None:
                return bag[key]
        return None

    hostname = attribute("hostname")
    if hostname is None:
        raise _Invalid("No hostname: set one on the host, one of its groups or the defaults.")
    platform = _text(attribute("platform")).lower()
    raw: dict[str, Any] = {
        "name": name,
        "host": hostname,
        "port": attribute("port"),
        "platform": NORNIR_PLATFORMS.get(platform, platform),
        "tags": [
            *_expand_groups(_group_names(value), groups),
            *split_tags(data("tags")),
            *split_tags(data("rookery_tags")),
        ],
    }
    given = {"name", "host", "port", "platform", "tags"}
    for key in ("driver", "enabled", "notes"):
        found = data(f"rookery_{key}")
        if found is not None:
            raw[key] = found
            given.add(key)
    return raw, given


# ------------------------------------------------------------------------ export


def _all_devices() -> list[Device]:
    return list(db.session.scalars(list_devices()))


def csv_cell(value: Any) -> str:
    """A value as a CSV cell no spreadsheet runs as a formula.

    A cell starting with ``= + - @``, tab or CR is prefixed with a single quote
    (OWASP's CSV injection advice), and so is one that already starts with quotes
    before such a character, so that ``csv_uncell`` gives back exactly the value.
    """
    text = "" if value is None else str(value)
    return "'" + text if _FORMULA_RE.match(text) else text


def csv_uncell(text: str) -> str:
    """The value ``csv_cell`` wrote: its neutralising quote removed."""
    return text[1:] if _FORMULA_RE.match(text) and text.startswith("'") else text


def export_csv() -> str:
    """Every device as CSV, in the columns ``import_csv`` takes back (formulas neutralised)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    # With "\n" line ends the csv module leaves a lone CR unquoted, and a reader takes it
    # for the end of the row (notes typed in a textarea arrive with CRLF): such rows are
    # quoted whole.
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for d in _all_devices():
        cells = [
            csv_cell(value)
            for value in (
                d.name,
                d.host,
                d.port,
                d.platform,
                d.driver,
                ";".join(t.name for t in d.tags),
                "true" if d.enabled else "false",
                d.notes,
            )
        ]
        (quoted if any("\r" in cell for cell in cells) else writer).writerow(cells)
    return out.getvalue()


def export_nornir() -> dict[str, str]:
    """Every device as a Nornir SimpleInventory: {"hosts.yaml": ..., "groups.yaml": ...}.

    Tags become groups; driver, enabled and notes go to ``data.rookery_*`` when they
    differ from the defaults.
    """
    hosts: dict[str, Any] = {}
    used: set[str] = set()
    for d in _all_devices():
        entry: dict[str, Any] = {"hostname": d.host, "port": d.port, "platform": d.platform}
        if d.tags:
            entry["groups"] = [t.name for t in d.tags]
            used.update(entry["groups"])
        data: dict[str, Any] = {}
        if d.driver != DEFAULT_DRIVER:
            data["rookery_driver"] = d.driver
        if not d.enabled:
            data["rookery_enabled"] = False
        if d.notes:
            data["rookery_notes"] = d.notes
        if data:
            entry["data"] = data
        hosts[d.name] = entry
    groups: dict[str, Any] = {name: {} for name in sorted(used)}
    return {"hosts.yaml": _dump(hosts), "groups.yaml": _dump(groups)}


def _dump(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)


# ------------------------------------------------------------------------ results


def recent_results(device_id: int, limit: int = 20) -> Select[tuple[DeviceResult, JobRun]]:
    """The device's latest per-run results with their runs, newest first."""
    return (
        select(DeviceResult, JobRun)
        .join(JobRun, JobRun.id == DeviceResult.run_id)
        .where(DeviceResult.device_id == device_id)
        .order_by(DeviceResult.id.desc())
        .limit(limit)
    )
