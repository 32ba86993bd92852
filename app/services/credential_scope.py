"""Credential scope: a credential goes only to a destination an admin approved.

An admin scopes a credential with tags: it is tried on the devices carrying one of
them. Who may change a device decides where the credential goes, so a change by anyone
below admin that would send a credential somewhere new puts the device's credentials
on hold:

- a new device carrying a tag that a credential uses;
- a device's host, port, platform or driver changed while a credential is in scope
  (a new address is a new destination; a new platform may log in differently, e.g.
  over telnet);
- a tag added to a device that brings a credential it did not have.

A held device keeps its inventory change, but no run sends it any credential (its
result says why) until an admin approves it, on the device page or through the API.
Changes by admins and by the command line (the machine's owner) are approved as made.
Tags that scope credentials can only be renamed or deleted by an admin. Holds and
approvals are audited; ``dispatch.resolve_credentials`` is where a hold is enforced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app import audit
from app.errors import Forbidden
from app.extensions import db
from app.models import Credential, Device, Role, Tag, User, credential_tags, utcnow
from app.services import actor_name

#: the fields of a device that say where (and how) its credentials are sent
DESTINATION_FIELDS = ("host", "port", "platform", "driver")


@dataclass(frozen=True)
class Destination:
    """Where a device's credentials would go, and which credentials they are."""

    host: str
    port: int
    platform: str
    driver: str
    credentials: frozenset[str]


def trusted(actor: User | str | None) -> bool:
    """Whether ``actor``'s changes are approved as made: admins, the CLI, the system."""
    return not isinstance(actor, User) or actor.has_role(Role.ADMIN)


def credentials_by_tag() -> dict[int, frozenset[str]]:
    """Each tag's credentials by name (one query: credentials are few)."""
    found: dict[int, set[str]] = {}
    rows = db.session.execute(
        select(credential_tags.c.tag_id, Credential.name).join(
            Credential, Credential.id == credential_tags.c.credential_id
        )
    )
    for tag_id, name in rows:
        found.setdefault(tag_id, set()).add(name)
    return {tag_id: frozenset(names) for tag_id, names in found.items()}


def destination(device: Device, scope: Mapping[int, frozenset[str]] | None = None) -> Destination:
    """``device``'s destination now; ``scope`` is ``credentials_by_tag()`` when known."""
    scope = credentials_by_tag() if scope is None else scope
    names: set[str] = set()
    for tag in device.tags:
        if tag.id is not None:
            names |= scope.get(tag.id, frozenset())
    return Destination(
        host=device.host,
        port=device.port,
        platform=device.platform,
        driver=device.driver,
        credentials=frozenset(names),
    )


def widening(before: Destination | None, after: Destination, actor: User | str | None) -> str:
    """Why the change from ``before`` (None: a new device) to ``after`` sends credentials
    somewhere an admin has not approved; empty when it does not."""
    if not after.credentials:
        return ""
    who = actor_name(actor)
    names = ", ".join(sorted(after.credentials))
    if before is None:
        return f"created by {who} with tags that credential(s) {names} use"
    reasons = [
        f"{field} changed from {getattr(before, field)} to {getattr(after, field)} by {who}"
        for field in DESTINATION_FIELDS
        if getattr(before, field) != getattr(after, field)
    ]
    gained = after.credentials - before.credentials
    if gained:
        reasons.append(f"tags changed by {who} bring credential(s) {', '.join(sorted(gained))}")
    return "; ".join(reasons)


def hold_if_widened(
    device: Device,
    before: Destination | None,
    actor: User | str | None,
    scope: Mapping[int, frozenset[str]] | None = None,
) -> str:
    """Put ``device``'s credentials on hold when a non-admin's change widened where they
    go (inside the caller's transaction, audited); the reason, or "" when approved."""
    if trusted(actor):
        return ""
    reason = widening(before, destination(device, scope), actor)
    if not reason:
        return ""
    device.credential_hold = (
        f"{device.credential_hold}; {reason}" if device.credential_hold else reason
    )[:2000]
    device.credential_hold_at = utcnow()
    device.credential_hold_by = actor_name(actor)
    db.session.flush()
    audit.record(
        actor=actor,
        action="hold",
        object_type="device",
        object_id=device.id,
        summary=f"credentials of device {device.name} on hold until an admin approves: {reason}",
    )
    return reason


def hold_view(device: Device) -> dict[str, Any] | None:
    """The hold as pages and the API show it, or None."""
    if not device.credential_hold:
        return None
    return {
        "reason": device.credential_hold,
        "since": device.credential_hold_at.isoformat() if device.credential_hold_at else None,
        "by": device.credential_hold_by,
    }


def approve(device_ids: Iterable[int], *, actor: User | str | None) -> list[Device]:
    """Release the holds of these devices (admins only; audited); commits.

    Devices without a hold are left as they are. Returns the devices released.
    """
    if not trusted(actor):
        raise Forbidden("Only an admin can approve where a device's credentials are sent.")
    released: list[Device] = []
    try:
        devices = db.session.scalars(
            select(Device)
            .where(Device.id.in_(sorted(set(device_ids))), Device.credential_hold.isnot(None))
            .order_by(Device.name)
            .with_for_update()
        )
        for device in devices:
            audit.record(
                actor=actor,
                action="approve",
                object_type="device",
                object_id=device.id,
                summary=f"approved the credentials of device {device.name} for "
                f"{device.host}:{device.port} ({device.platform}); held because "
                f"{device.credential_hold}",
                before=hold_view(device),
            )
            device.credential_hold = None
            device.credential_hold_at = None
            device.credential_hold_by = None
            released.append(device)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return released


def refuse_tag_change(tag: Tag, actor: User | str | None, verb: str) -> None:
    """Refuse a non-admin renaming or deleting a tag that scopes credentials: it would
    change (silently) where an admin's credentials go."""
    if trusted(actor):
        return
    names = credentials_by_tag().get(tag.id)
    if names:
        raise Forbidden(
            f"Tag {tag.name} scopes credential(s) {', '.join(sorted(names))}; only an admin "
            f"can {verb} it."
        )
