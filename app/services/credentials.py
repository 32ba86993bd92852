"""Credentials: logins for devices sharing one of their tags, tried in priority order.

Passwords and enable secrets are Fernet-encrypted with the instance key before they
reach the session; the clear text exists only in the call that sets it and in what
``reveal`` hands the driver. Nothing here logs, audits, flashes or raises a secret:
the audit trail records that a secret changed, never its value. ``record_use`` counts
successes and failures atomically from any thread.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app import audit, crypto
from app.errors import Conflict, NotFound, RookeryError, ValidationError
from app.extensions import db
from app.models import Credential, Job, Tag, User, job_credentials
from app.services import get_row, inventory

logger = logging.getLogger(__name__)

MIN_PRIORITY = 0
MAX_PRIORITY = 1000
DEFAULT_PRIORITY = 100
MAX_NAME = 128


class CredentialKeyError(RookeryError):
    """A credential cannot be decrypted: the encryption key is not the one it was stored with."""


def _clean_name(value: Any, errors: dict[str, str]) -> str:
    name = "" if value is None else str(value).strip()
    if not name or len(name) > MAX_NAME:
        errors["name"] = f"A credential needs a name of at most {MAX_NAME} characters."
    return name


def _clean_username(value: Any, errors: dict[str, str]) -> str:
    username = "" if value is None else str(value).strip()
    if not username:
        errors["username"] = "A user name is required."
    elif len(username) > MAX_NAME:
        errors["username"] = f"A user name is at most {MAX_NAME} characters."
    return username


def _clean_priority(value: Any, errors: dict[str, str]) -> int:
    if value is None or value == "":
        return DEFAULT_PRIORITY
    try:
        number = int(value)
        if isinstance(value, bool) or not MIN_PRIORITY <= number <= MAX_PRIORITY:
            raise ValueError
    except (TypeError, ValueError):
        errors["priority"] = (
            f"Priority is a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} (lower is tried "
            "first)."
        )
        return DEFAULT_PRIORITY
    return number


def _clean_tags(value: Any, errors: dict[str, str]) -> list[str]:
    try:
        return inventory.clean_tag_names(value)
    except ValidationError as exc:
        errors["tags"] = exc.message
        return []


def _raise_if(errors: dict[str, str]) -> None:
    if errors:
        raise ValidationError(" ".join(errors.values()), fields=errors)


def snapshot(credential: Credential) -> dict[str, Any]:
    """What the audit trail records of a credential: never a secret, not even encrypted."""
    return {
        "name": credential.name,
        "username": credential.username,
        "priority": credential.priority,
        "tags": [t.name for t in credential.tags],
        "with_enable": credential.enable_secret_enc is not None,
    }


def public_view(credential: Credential) -> dict[str, Any]:
    """A credential fit for a page or an API answer: no password, no secret."""
    return {
        "id": credential.id,
        "name": credential.name,
        "username": credential.username,
        "priority": credential.priority,
        "tags": [t.name for t in credential.tags],
        "has_enable_secret": credential.enable_secret_enc is not None,
        "success_count": credential.success_count,
        "failure_count": credential.failure_count,
        "last_used_at": _iso(credential.last_used_at),
        "created_at": _iso(credential.created_at),
        "updated_at": _iso(credential.updated_at),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def list_credentials(*, tag: str | None = None) -> Select[tuple[Credential]]:
    """Credentials in the order they are tried (priority, then name)."""
    query = (
        select(Credential)
        .options(selectinload(Credential.tags))
        .order_by(Credential.priority, Credential.name)
    )
    if tag:
        query = query.where(Credential.tags.any(Tag.name == tag))
    return query


def get_credential(credential_id: int) -> Credential:
    return get_row(Credential, credential_id, "credential")


def get_credential_by_name(name: str) -> Credential:
    credential = db.session.scalar(select(Credential).where(Credential.name == name))
    if credential is None:
        raise NotFound(f"No credential named {name!r}.")
    return credential


def _refuse_taken_name(name: str, *, other_than: int | None = None) -> None:
    query = select(Credential.id).where(Credential.name == name)
    if other_than is not None:
        query = query.where(Credential.id != other_than)
    if db.session.scalar(query) is not None:
        raise Conflict(f"A credential named {name!r} already exists.")


def _flush_unique(name: str) -> None:
    try:
        db.session.flush()
    except IntegrityError:  # its text would quote the (encrypted) row: never pass it on
        raise Conflict(f"A credential named {name!r} already exists.") from None


def create_credential(
    name: str,
    username: str,
    password: str,
    *,
    enable_secret: str | None = None,
    priority: int | str | None = DEFAULT_PRIORITY,
    tags: Iterable[str] | str | None = None,
    actor: User | str | None,
) -> Credential:
    """Save a credential, its secrets encrypted, with an audit entry; commits."""
    try:
        errors: dict[str, str] = {}
        clean_name = _clean_name(name, errors)
        clean_username = _clean_username(username, errors)
        if not password:
            errors["password"] = "A password is required."
        clean_priority = _clean_priority(priority, errors)
        tag_names = _clean_tags(list(tags or []) if not isinstance(tags, str) else tags, errors)
        _raise_if(errors)
        _refuse_taken_name(clean_name)
        credential = Credential(
            name=clean_name,
            username=clean_username,
            password_enc=crypto.encrypt(password),
            enable_secret_enc=crypto.encrypt(enable_secret) if enable_secret else None,
            priority=clean_priority,
        )
        credential.tags = inventory.ensure_tags(tag_names)
        db.session.add(credential)
        _flush_unique(clean_name)
        audit.record(
            actor=actor,
            action="create",
            object_type="credential",
            object_id=credential.id,
            summary=f"created credential {clean_name} for user {clean_username}",
            after=snapshot(credential),
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    logger.info("Credential %s created", clean_name)
    return credential


def update_credential(
    credential_id: int,
    *,
    actor: User | str | None,
    name: str | None = None,
    username: str | None = None,
    password: str | None = None,
    enable_secret: str | None = None,
    priority: int | str | None = None,
    tags: Iterable[str] | str | None = None,
) -> Credential:
    """Change a credential; None keeps a field. An empty password also keeps the stored
    one (a blank form field); an empty enable secret clears it. Commits."""
    credential = get_credential(credential_id)
    try:
        errors: dict[str, str] = {}
        before = snapshot(credential)
        rotated: list[str] = []
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = _clean_name(name, errors)
        if username is not None:
            changes["username"] = _clean_username(username, errors)
        if priority is not None and priority != "":
            changes["priority"] = _clean_priority(priority, errors)
        if tags is not None:
            tag_names = _clean_tags(list(tags) if not isinstance(tags, str) else tags, errors)
        _raise_if(errors)
        # Checked and tags made before any attribute changes, so no autoflush trips
        # over the unique name.
        if "name" in changes:
            _refuse_taken_name(changes["name"], other_than=credential.id)
        if tags is not None:
            credential.tags = inventory.ensure_tags(tag_names)
        for key, value in changes.items():
            setattr(credential, key, value)
        if password:
            credential.password_enc = crypto.encrypt(password)
            rotated.append("new password")
        if enable_secret is not None:
            if enable_secret:
                credential.enable_secret_enc = crypto.encrypt(enable_secret)
                rotated.append("new enable secret")
            elif credential.enable_secret_enc is not None:
                credential.enable_secret_enc = None
                rotated.append("enable secret cleared")
        _flush_unique(credential.name)
        after = snapshot(credential)
        if after == before and not rotated:
            db.session.rollback()
            return credential
        audit.record(
            actor=actor,
            action="update",
            object_type="credential",
            object_id=credential.id,
            summary=f"changed credential {credential.name}"
            + (f" ({', '.join(rotated)})" if rotated else ""),
            before=before,
            after={**after, "changed": rotated},
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return credential


def delete_credential(credential_id: int, *, actor: User | str | None) -> None:
    """Delete a credential; refused while jobs name it (they would silently fall back to
    tag matching). Commits."""
    credential = get_credential(credential_id)
    try:
        jobs = list(
            db.session.scalars(
                select(Job.name)
                .join(job_credentials, job_credentials.c.job_id == Job.id)
                .where(job_credentials.c.credential_id == credential.id)
                .order_by(Job.name)
            )
        )
        if jobs:
            raise Conflict(
                f"Credential {credential.name} is named by job(s) {', '.join(jobs)}; "
                "remove it from them first."
            )
        name = credential.name
        audit.record(
            actor=actor,
            action="delete",
            object_type="credential",
            object_id=credential.id,
            summary=f"deleted credential {name}",
            before=snapshot(credential),
        )
        db.session.delete(credential)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    logger.info("Credential %s deleted", name)


def reveal(credential: Credential) -> tuple[str, str | None]:
    """The clear password and enable secret, for the driver that logs in with them."""
    try:
        password = crypto.decrypt(credential.password_enc)
        secret = (
            crypto.decrypt(credential.enable_secret_enc)
            if credential.enable_secret_enc is not None
            else None
        )
    except crypto.SecretUnreadable:
        raise CredentialKeyError(
            f"Cannot decrypt credential {credential.name!r}: the encryption key "
            "(ROOKERY_ENCRYPTION_KEY or instance/encryption.key) is not the one it was "
            "stored with."
        ) from None
    return password, secret


def record_use(credential_id: int, success: bool) -> None:
    """Count one login with this credential, atomically, in a short transaction of its own
    (any thread with the app context: it does not touch the caller's session)."""
    counter = Credential.success_count if success else Credential.failure_count
    with Session(db.engine) as session, session.begin():
        session.execute(
            update(Credential)
            .where(Credential.id == credential_id)
            .values(
                {
                    counter: counter + 1,
                    Credential.last_used_at: func.now(),
                    # a use is not a change of the credential
                    Credential.updated_at: Credential.updated_at,
                }
            )
            .execution_options(synchronize_session=False)
        )
