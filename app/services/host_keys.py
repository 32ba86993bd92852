"""Pinned SSH host keys of devices: learn, record the refused, accept, set, forget.

Each device may have one pinned host key (``devices.host_key*``) and one pending key
(``devices.host_key_pending*``: the last key a server offered when its connection was
refused). How the key was pinned is ``host_key_source``: ``learned`` (trust on first
use), or ``accepted`` / ``set`` by an admin (the only ones strict mode trusts).

Workers write from their device threads, in one short autocommit statement each (as
the dispatcher's bookkeeping does): ``learn`` pins a key only where none is pinned yet
(``WHERE host_key IS NULL``), so a key another worker pinned meanwhile is never
overwritten; ``record_pending`` keeps what a refused server offered. People change keys
through ``accept_pending``, ``set_key`` and ``forget`` (admins only, audited with the old
and new fingerprints; the callers check the role).
"""

from __future__ import annotations

import logging
from typing import Any

from app import audit, database, drivers
from app.errors import Conflict, ValidationError
from app.extensions import db
from app.job_api import DeviceTarget
from app.models import Device, User, utcnow
from app.services import get_row
from app.ssh_keys import HostKey, InvalidKey, parse_public_key

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------ worker side

_LEARN_SQL = """
    UPDATE devices SET host_key_type = %(type)s, host_key = %(key)s,
        host_key_seen_at = now(), host_key_source = 'learned'
    WHERE id = %(id)s AND host_key IS NULL
    RETURNING host_key_type, host_key
"""
_PINNED_SQL = "SELECT host_key_type, host_key FROM devices WHERE id = %(id)s"
_PENDING_SQL = """
    UPDATE devices SET host_key_pending_type = %(type)s, host_key_pending = %(key)s,
        host_key_pending_seen_at = now()
    WHERE id = %(id)s
    RETURNING id
"""


def learn(device_id: int, key: HostKey) -> HostKey | None:
    """Pin ``key`` for the device unless a key is pinned already; the key pinned now.

    Trust on first use: the first worker to get here pins its key; a worker that comes
    second (two runs met the device at once) gets the key the first one pinned, which
    the caller compares with the one its server presented. None: the device is gone.
    """
    params = {"id": device_id, "type": key.type, "key": key.key}
    row = database.autocommit_row(_LEARN_SQL, params)
    if row is not None:
        logger.info("Device #%s: host key %s pinned on first use", device_id, key.fingerprint)
        return key
    row = database.autocommit_row(_PINNED_SQL, {"id": device_id})
    if row is None or row[1] is None:
        return None
    return HostKey(type=row[0], key=row[1])


def record_pending(device_id: int, key: HostKey) -> None:
    """Keep the key a refused server offered as the device's pending key."""
    database.autocommit_row(_PENDING_SQL, {"id": device_id, "type": key.type, "key": key.key})


def pin_first_use(target: DeviceTarget, session: drivers.DriverSession) -> None:
    """After a connection that checked no pinned key (trust on first use): pin the key
    its server presented, unless another worker pinned one meanwhile.

    A different key pinned meanwhile (a race with an impostor during first use) closes
    the session and raises ``HostKeyMismatch``; the caller records the key as pending.
    """
    key = getattr(session, "host_key", None)
    if key is None or not getattr(session, "host_key_unpinned", False):
        return
    try:
        pinned = learn(target.id, key)
    except BaseException:
        session.close()  # not handed out yet: nobody else would close it
        raise
    if pinned is None or pinned == key:
        target.host_key = pinned
        return
    session.close()
    raise drivers.HostKeyMismatch(
        f"{target.name} ({target.host}:{target.port}): host key changed: expected "
        f"{pinned.fingerprint} (pinned by another connection meanwhile), got "
        f"{key.fingerprint}; an admin must accept the new key.",
        offered=key,
    )


def record_refused(target: DeviceTarget, refusal: drivers.HostKeyRefused) -> None:
    """Keep the key of a refused connection as the device's pending key (and log it)."""
    logger.warning("%s", refusal)
    if refusal.offered is not None:
        record_pending(target.id, refusal.offered)


# ------------------------------------------------------------------- admin side


def _locked(device_id: int) -> Device:
    return get_row(
        Device, device_id, "device", with_for_update={"of": Device}, populate_existing=True
    )


def _trail(key: HostKey | None, source: str | None) -> dict[str, Any] | None:
    """What the audit trail keeps of a key (its fingerprint: the trail redacts "key")."""
    if key is None:
        return None
    return {"fingerprint": key.fingerprint, "type": key.type, "pinned_by": source}


def _pin(device: Device, key: HostKey, source: str) -> None:
    device.host_key_type = key.type
    device.host_key = key.key
    device.host_key_source = source
    device.host_key_seen_at = utcnow()
    device.host_key_pending_type = None
    device.host_key_pending = None
    device.host_key_pending_seen_at = None


def accept_pending(
    device_id: int, *, actor: User | str | None, fingerprint: str | None = None
) -> Device:
    """Pin the device's pending key (an admin checked its fingerprint); commits.

    ``fingerprint``: the pending key the admin saw; if another key became pending since,
    nothing changes (Conflict), so an admin never accepts a key they did not see.
    """
    try:
        device = _locked(device_id)
        pending = device.pending_host_key
        if pending is None:
            raise Conflict(f"Device {device.name} has no pending host key to accept.")
        if fingerprint is not None and fingerprint.strip() != pending.fingerprint:
            raise Conflict(
                f"The pending host key of {device.name} is now {pending.fingerprint}, not "
                f"{fingerprint.strip()[:80]}; check it again before accepting."
            )
        before = _trail(device.pinned_host_key, device.host_key_source)
        _pin(device, pending, "accepted")
        old = before["fingerprint"] if before else "none"
        audit.record(
            actor=actor,
            action="host_key_accept",
            object_type="device",
            object_id=device.id,
            summary=f"accepted the host key of device {device.name}: {old} -> "
            f"{pending.fingerprint}",
            before=before,
            after=_trail(pending, "accepted"),
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    logger.info("Device %s: host key %s accepted", device.name, pending.fingerprint)
    return device


def set_key(device_id: int, text: str, *, actor: User | str | None) -> Device:
    """Pin the public key an admin gives (``<type> <base64>``, e.g. from ``ssh-keyscan``)."""
    try:
        key = parse_public_key(text)
    except InvalidKey as exc:
        raise ValidationError(str(exc), fields={"key": str(exc)}) from None
    try:
        device = _locked(device_id)
        before = _trail(device.pinned_host_key, device.host_key_source)
        _pin(device, key, "set")
        old = before["fingerprint"] if before else "none"
        audit.record(
            actor=actor,
            action="host_key_set",
            object_type="device",
            object_id=device.id,
            summary=f"set the host key of device {device.name}: {old} -> {key.fingerprint}",
            before=before,
            after=_trail(key, "set"),
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return device


def forget(device_id: int, *, actor: User | str | None) -> Device:
    """Unpin the device's key (and drop the pending one): the next connection learns the
    key again (in strict mode: fails, and its key is pending). Commits."""
    try:
        device = _locked(device_id)
        before = _trail(device.pinned_host_key, device.host_key_source)
        pending = device.pending_host_key
        if before is None and pending is None:
            db.session.rollback()
            return device
        device.host_key_type = device.host_key = device.host_key_source = None
        device.host_key_seen_at = None
        device.host_key_pending_type = device.host_key_pending = None
        device.host_key_pending_seen_at = None
        old = before["fingerprint"] if before else "none"
        audit.record(
            actor=actor,
            action="host_key_forget",
            object_type="device",
            object_id=device.id,
            summary=f"forgot the host key of device {device.name} ({old}); the next "
            "connection learns it again",
            before=before,
            after=None,
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return device
