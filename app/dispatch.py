"""The dispatcher's device side: credentials, circuit breakers and connections.

``resolve_credentials`` finds every device's credentials in one query (those sharing
a tag with the device, lowest priority first — or those of them the job names; none
while the device's credentials are on hold).
``make_connector`` builds what ``DeviceTarget.connect()`` calls: it skips a device
whose circuit is open, tries the credentials in order (an authentication failure
moves to the next one; a refused host key ends the device at once, see
``services.host_keys``), retries connection errors with backoff, keeps the
credentials' success and failure counts, and opens the device's circuit after
ROOKERY_CIRCUIT_FAILURES consecutive connection failures. Breaker state lives in
PostgreSQL, so every worker sees it.

Round trips per device are what a run of many fast devices pays for (each one also
waits for the GIL among the run's busy threads), so the device path keeps them few:
the breakers of a run's devices are read in one autocommit statement when the run
starts (``circuit_states``; a device's state may be seconds old when it connects, see
``Connector``), written only when their state changes, and a device's successful
login is counted in the statement that writes the device's result (see ``Connector``);
refusals are counted at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app import database, drivers
from app.extensions import db
from app.job_api import DeviceTarget, ResolvedCredential
from app.models import (
    Credential,
    Device,
    credential_tags,
    device_tags,
    job_credentials,
    utcnow,
)
from app.services import credentials, host_keys

logger = logging.getLogger(__name__)


class NoCredentials(drivers.DriverError):
    """No credential matches this device's tags."""


class CircuitOpen(drivers.DriverError):
    """The device failed too often lately; it is skipped until its cool-down ends."""


def resolve_credentials(
    session: Session, device_ids: Iterable[int], job_id: int | None
) -> dict[int, tuple[ResolvedCredential, ...]]:
    """Each device's credentials in priority order, decrypted, in one batch.

    A device gets only credentials sharing one of its tags (their scope), and none while
    its credentials are on hold (``services.credential_scope``). A job that names
    credentials picks among those, in its own order: naming a credential never sends it
    to a device outside its scope.
    """
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(device_tags.c.device_id, Credential)
        .join(credential_tags, credential_tags.c.tag_id == device_tags.c.tag_id)
        .join(Credential, Credential.id == credential_tags.c.credential_id)
        .join(Device, Device.id == device_tags.c.device_id)
        .where(device_tags.c.device_id.in_(ids), Device.credential_hold.is_(None))
        .order_by(device_tags.c.device_id, Credential.priority, Credential.id)
    ).all()
    named: list[int] = []
    if job_id is not None:
        named = list(
            session.scalars(
                select(Credential.id)
                .join(job_credentials, job_credentials.c.credential_id == Credential.id)
                .where(job_credentials.c.job_id == job_id)
                .order_by(Credential.priority, Credential.id)
            )
        )
    decrypted: dict[int, ResolvedCredential] = {}
    found: dict[int, list[ResolvedCredential]] = {}
    for device_id, credential in rows:
        if named and credential.id not in named:
            continue
        if credential.id not in decrypted:
            decrypted[credential.id] = _decrypt(credential)
        chosen_list = found.setdefault(device_id, [])
        if all(c.id != credential.id for c in chosen_list):  # two shared tags: once
            chosen_list.append(decrypted[credential.id])
    return {device_id: tuple(creds) for device_id, creds in found.items()}


def missing_credentials_reasons(
    session: Session, device_ids: Iterable[int], job_id: int | None
) -> dict[int, str]:
    """Why each of these devices got no credential from ``resolve_credentials``."""
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    held = dict(
        session.execute(
            select(Device.id, Device.credential_hold).where(
                Device.id.in_(ids), Device.credential_hold.isnot(None)
            )
        ).all()
    )
    named = []
    if job_id is not None:
        named = list(
            session.scalars(
                select(Credential.name)
                .join(job_credentials, job_credentials.c.credential_id == Credential.id)
                .where(job_credentials.c.job_id == job_id)
                .order_by(Credential.name)
            )
        )
    if named:
        otherwise = (
            f"No credentials: none of the job's credentials ({', '.join(named)}) shares a "
            "tag with this device."
        )
    else:
        otherwise = "No credentials: no credential shares a tag with this device."
    return {
        device_id: (
            f"Credentials on hold until an admin approves this device: {held[device_id]}."
            if device_id in held
            else otherwise
        )
        for device_id in ids
    }


def _decrypt(credential: Credential) -> ResolvedCredential:
    password, secret = credentials.reveal(credential)
    return ResolvedCredential(
        id=credential.id,
        name=credential.name,
        username=credential.username,
        password=password,
        enable_secret=secret,
        priority=credential.priority,
    )


# ------------------------------------------------------------------- bookkeeping


_CIRCUIT_SQL = (
    "SELECT consecutive_failures, open_until FROM device_circuits WHERE device_id = %(id)s"
)
_CIRCUITS_SQL = (
    "SELECT device_id, consecutive_failures, open_until FROM device_circuits "
    "WHERE device_id = ANY(%(ids)s)"
)

#: a device's breaker as read: (consecutive failures, open until); no row = a clean record
CircuitState = tuple[int, datetime | None]


def circuit_states(device_ids: Iterable[int]) -> dict[int, CircuitState]:
    """The breakers of many devices (a run's) in one autocommit statement.

    Only devices with a breaker row are in the answer; the others have a clean record.
    """
    ids = sorted(set(device_ids))
    if not ids:
        return {}
    with database.autocommit(db.engine) as connection:
        rows = connection.execute(_CIRCUITS_SQL, {"ids": ids}).fetchall()
    return {int(device_id): (int(failures), until) for device_id, failures, until in rows}


def circuit_check(device_id: int) -> int:
    """Raise CircuitOpen while the device's cool-down lasts; else its failure streak."""
    row = database.autocommit_row(_CIRCUIT_SQL, {"id": device_id})
    return circuit_verdict(None if row is None else (int(row[0]), row[1]))


def circuit_verdict(state: CircuitState | None) -> int:
    """Raise CircuitOpen while the cool-down of ``state`` lasts; else its failure streak."""
    if state is None:
        return 0
    failures, open_until = state
    if open_until is not None and open_until > utcnow():
        raise CircuitOpen(
            f"Skipped: too many connection failures in a row; retried after "
            f"{open_until.strftime('%Y-%m-%d %H:%M:%S UTC')}."
        )
    return int(failures)


def circuit_record(
    device_id: int, ok: bool, error: str | None, *, threshold: int, cooldown_seconds: int
) -> None:
    """Reset the breaker on success; count a failure and open it at the threshold."""
    with Session(db.engine) as session:
        if ok:
            session.execute(
                text(
                    "UPDATE device_circuits SET consecutive_failures = 0, open_until = NULL "
                    "WHERE device_id = :id"
                ),
                {"id": device_id},
            )
        else:
            session.execute(
                text(
                    """
                INSERT INTO device_circuits (device_id, consecutive_failures, last_failure_at,
                                             last_error, open_until)
                VALUES (:id, 1, now(), :error,
                        CASE WHEN 1 >= :threshold THEN now() + :cooldown END)
                ON CONFLICT (device_id) DO UPDATE SET
                    consecutive_failures = device_circuits.consecutive_failures + 1,
                    last_failure_at = now(),
                    last_error = :error,
                    open_until = CASE
                        WHEN device_circuits.consecutive_failures + 1 >= :threshold
                        THEN now() + :cooldown
                        ELSE device_circuits.open_until END
                """
                ),
                {
                    "id": device_id,
                    "error": (error or "")[:500],
                    "threshold": threshold,
                    "cooldown": timedelta(seconds=cooldown_seconds),
                },
            )
        session.commit()


# -------------------------------------------------------------------- connecting

_device_slots: threading.BoundedSemaphore | None = None
_device_slots_lock = threading.Lock()


def device_slots(limit: int) -> threading.BoundedSemaphore:
    """The worker-wide bound on device sessions open at once (all runs together)."""
    global _device_slots
    with _device_slots_lock:
        if _device_slots is None:
            _device_slots = threading.BoundedSemaphore(limit)
        return _device_slots


def session_options(config: dict) -> drivers.SessionOptions:
    return drivers.SessionOptions(
        connect_timeout=config["ROOKERY_SSH_CONNECT_TIMEOUT"],
        read_timeout=config["ROOKERY_SSH_READ_TIMEOUT"],
        legacy_algorithms=config["ROOKERY_SSH_LEGACY_ALGORITHMS"],
        host_keys=config["ROOKERY_SSH_HOST_KEYS"],
    )


class Connector:
    """What ``DeviceTarget.connect()`` calls, configured from the app's settings.

    One per run. Given ``circuits`` (``circuit_states`` of the run's devices, read when
    the run starts), it checks each device's breaker against that snapshot instead of
    reading it again per device: one statement per run instead of one per device. The
    snapshot may be a few seconds old by the time a device's turn comes: a breaker
    another run opened in the meantime is seen by the next run (its cool-down end is
    still compared with the time of the connection), and a device whose breaker opens
    during this run is not connected again by it anyway (its unit has failed). Without
    ``circuits`` each device's breaker is read when it connects.

    A successful login is not counted on its own: it waits, per device, for the
    statement that writes the device's result (``peek_login``, then ``take_login`` once
    that committed); the runner counts whatever a unit leaves behind with
    ``record_logins``. A second credential succeeding for the same device (a job that
    connects again) is counted at once, as refusals are.
    """

    def __init__(self, app: Flask, circuits: Mapping[int, CircuitState] | None = None) -> None:
        config = app.config
        self._circuits = circuits
        self.options = session_options(config)
        self.retries = config["ROOKERY_CONNECT_RETRIES"]
        self.threshold = config["ROOKERY_CIRCUIT_FAILURES"]
        self.cooldown = config["ROOKERY_CIRCUIT_COOLDOWN_SECONDS"]
        self._logins: dict[int, tuple[int, int]] = {}  # device id -> (credential id, count)
        self._lock = threading.Lock()

    def __call__(self, target: DeviceTarget) -> drivers.DriverSession:
        if not target.credentials:
            raise NoCredentials(f"{target.name}: no credential matches this device's tags.")
        if self._circuits is None:
            streak = circuit_check(target.id)
        else:
            streak = circuit_verdict(self._circuits.get(target.id))
        refused: list[str] = []
        for credential in target.credentials:
            for attempt in range(self.retries + 1):
                target.connect_attempts += 1
                try:
                    session = drivers.open_session(target, credential, self.options)
                    host_keys.pin_first_use(target, session)
                except drivers.HostKeyRefused as exc:
                    # Refused before authentication: no password went to that server, and
                    # none may (no retry, no other credential; not a credential failure).
                    host_keys.record_refused(target, exc)
                    raise
                except drivers.AuthenticationFailed:
                    credentials.record_use(credential.id, False)
                    refused.append(credential.name)
                    break
                except drivers.ConnectionFailed as exc:
                    if attempt < self.retries:
                        time.sleep(min(2.0**attempt, 5.0))
                        continue
                    circuit_record(
                        target.id,
                        False,
                        str(exc),
                        threshold=self.threshold,
                        cooldown_seconds=self.cooldown,
                    )
                    raise
                self._count_login(target.id, credential.id)
                if streak:  # a clean record needs no write
                    circuit_record(
                        target.id,
                        True,
                        None,
                        threshold=self.threshold,
                        cooldown_seconds=self.cooldown,
                    )
                target.used_credential = credential.name
                return session
        raise drivers.AuthenticationFailed(
            f"{target.name}: every credential was refused ({', '.join(refused)})."
        )

    def _count_login(self, device_id: int, credential_id: int) -> None:
        with self._lock:
            pending = self._logins.get(device_id)
            if pending is None or pending[0] == credential_id:
                self._logins[device_id] = (credential_id, (pending or (0, 0))[1] + 1)
                return
        credentials.record_use(credential_id, True)

    def peek_login(self, device_id: int) -> tuple[int, int] | None:
        """The device's uncounted successful logins: (credential id, count), or None."""
        with self._lock:
            return self._logins.get(device_id)

    def take_login(self, device_id: int) -> tuple[int, int] | None:
        """As ``peek_login``, and forget them: the caller has counted them (or will)."""
        with self._lock:
            return self._logins.pop(device_id, None)


def record_logins(login: tuple[int, int] | None) -> None:
    """Count logins that ``take_login`` handed out but no result statement counted."""
    if login is not None:
        credential_id, count = login
        for _ in range(count):
            credentials.record_use(credential_id, True)


def make_connector(app: Flask, device_ids: Iterable[int] | None = None) -> Connector:
    """What ``DeviceTarget.connect()`` calls, configured from the app's settings.

    With ``device_ids`` (a run's devices) their breakers are read now, in one statement,
    and checked from that snapshot (see ``Connector``).
    """
    return Connector(app, None if device_ids is None else circuit_states(device_ids))


#: the device result status each driver error ends in
RESULT_STATUS: tuple[tuple[type[BaseException], str], ...] = (
    (NoCredentials, "no_credentials"),
    (CircuitOpen, "skipped"),
    (drivers.AuthenticationFailed, "auth_failed"),
    (drivers.ConnectionFailed, "unreachable"),
    (drivers.CommandTimeout, "timeout"),
    (drivers.UnsupportedPlatform, "failed"),
    (drivers.HostKeyMismatch, "host_key_changed"),
    (drivers.HostKeyNotApproved, "host_key_unapproved"),
)


def result_status(exc: BaseException) -> str:
    return next((status for kind, status in RESULT_STATUS if isinstance(exc, kind)), "failed")
