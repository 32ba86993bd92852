"""Rookery's tables, as typed SQLAlchemy 2 models, and the queries that belong to them.

People (users, API tokens, login failures, audit trail), inventory (tags, devices,
credentials, circuit breakers), work (jobs, schedules and their fires, runs, device
results, logs, events, webhooks). Procrastinate's own tables live beside these,
created by a migration, and are not modelled here.
"""

from __future__ import annotations

import enum
import functools
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Select,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.ssh_keys import HostKey


def utcnow() -> datetime:
    """Timezone-aware now, the only kind of datetime Rookery stores."""
    return datetime.now(UTC)


TZDateTime = DateTime(timezone=True)

#: how a device's pinned host key came: the ones an admin approved
HOST_KEY_APPROVED = ("accepted", "set")


class Role(enum.StrEnum):
    """What a person may do."""

    #: reads everything except credentials' secrets (which nobody reads)
    VIEWER = "viewer"
    #: creates, edits, runs and cancels jobs; manages devices
    OPERATOR = "operator"
    #: everything, plus credentials, users and settings
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}[self]


class RunStatus(enum.StrEnum):
    """Lifecycle of one run (see the design's Statuses)."""

    #: row written, transaction not yet committed: never seen outside
    PENDING = "PENDING"
    #: in the queue, waiting for a worker
    QUEUED = "QUEUED"
    #: starts later: a schedule_at, or the next attempt of a retry
    SCHEDULED = "SCHEDULED"
    #: waits for the runs it depends on
    WAITING = "WAITING"
    #: a worker executes it
    RUNNING = "RUNNING"
    COMPLETED_SUCCESS = "COMPLETED_SUCCESS"
    COMPLETED_PARTIAL_FAILURE = "COMPLETED_PARTIAL_FAILURE"
    #: every device failed, or a global job returned success False
    COMPLETED_FAILURE = "COMPLETED_FAILURE"
    COMPLETED_NO_DEVICES = "COMPLETED_NO_DEVICES"
    #: no targeted device had credentials
    COMPLETED_NO_CREDENTIALS = "COMPLETED_NO_CREDENTIALS"
    #: the credential resolver itself failed
    FAILED_CREDENTIAL_RESOLUTION = "FAILED_CREDENTIAL_RESOLUTION"
    #: the dispatcher, driver loading or the git store failed
    FAILED_DISPATCHER_ERROR = "FAILED_DISPATCHER_ERROR"
    #: a global job raised, the runner crashed, the job type is unknown, a worker died
    FAILED_UNEXPECTED = "FAILED_UNEXPECTED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"

    @property
    def is_final(self) -> bool:
        return self not in _ACTIVE_STATUSES

    @property
    def is_failure(self) -> bool:
        return self.value.startswith("FAILED_") or self in {
            RunStatus.COMPLETED_FAILURE,
            RunStatus.TIMEOUT,
        }


_ACTIVE_STATUSES = frozenset(
    {
        RunStatus.PENDING,
        RunStatus.QUEUED,
        RunStatus.SCHEDULED,
        RunStatus.WAITING,
        RunStatus.RUNNING,
    }
)
ACTIVE_STATUSES: frozenset[RunStatus] = _ACTIVE_STATUSES


class Priority(enum.IntEnum):
    """Queue priorities: higher runs first."""

    LOW = 1
    NORMAL = 5
    HIGH = 10
    CRITICAL = 15


# --------------------------------------------------------------------------- people


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), default=Role.VIEWER.value)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    #: Part of every session and remember-me cookie (see ``get_id``); raising it ends
    #: them all: logout, disable, a password or role change do (app/services/users.py).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="role"),)

    #: When the login this object stands for began (int, epoch seconds), or None: set
    #: by the login and by the user loader, never stored (not annotated: not mapped).
    login_stamp = None

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    def get_id(self) -> str:
        """What the session and the remember-me cookie hold: ``id:session_version:stamp``.

        Flask-Login's "alternative token": the user loader (app/auth.py) accepts it only
        while the version is the user's current one and the login is younger than the
        remember-me duration, so raising the version ends every session at once, and
        each login's cookie differs from the one before.
        """
        if self.login_stamp is None:
            self.login_stamp = int(time.time())
        return f"{self.id}:{self.session_version}:{self.login_stamp}"

    # UserMixin compares get_id(), which holds the login's stamp: the same person is
    # the same user whatever login an object stands for.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, User):
            return NotImplemented
        if self.id is None or other.id is None:
            return self is other
        return self.id == other.id

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = object.__hash__

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def has_role(self, role: Role) -> bool:
        return Role(self.role).rank >= role.rank

    def __repr__(self) -> str:
        return f"<User {self.username} {self.role}>"


@functools.cache
def _dummy_password_hash() -> str:
    # Made like every real hash (same method and cost), so checking it costs the same.
    return generate_password_hash(secrets.token_urlsafe(24))


def check_no_user_password(password: str) -> bool:
    """Check ``password`` against a dummy hash: always False, as slow as a real check.

    A login for an unknown name does this instead of answering at once, so the time
    of an answer does not tell which user names exist.
    """
    check_password_hash(_dummy_password_hash(), password)
    return False


class ApiToken(db.Model):
    """A bearer token for the JSON API; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(TZDateTime)

    user: Mapped[User] = relationship()


class LoginFailure(db.Model):
    """One failed login, counted per (user name, address) and per address by every process."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )


class AuditEntry(db.Model):
    """Who changed what and when, with before/after (secrets redacted)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    #: a copy of the name, so the trail stays readable after the user is gone
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_log_object", "object_type", "object_id"),)


# ------------------------------------------------------------------------ inventory

device_tags = Table(
    "device_tags",
    db.metadata,
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True),
)

credential_tags = Table(
    "credential_tags",
    db.metadata,
    Column("credential_id", ForeignKey("credentials.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Tag(db.Model):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class Device(db.Model):
    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    #: a hostname or an address
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=22)
    #: netmiko device_type, e.g. cisco_ios
    platform: Mapped[str] = mapped_column(String(64))
    #: which driver backend talks to it
    driver: Mapped[str] = mapped_column(String(32), default="netmiko")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    notes: Mapped[str] = mapped_column(Text, default="")
    #: why no credential is sent to this device until an admin approves it (see
    #: app/services/credential_scope.py); None: its destination is approved
    credential_hold: Mapped[str | None] = mapped_column(Text)
    credential_hold_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    credential_hold_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)
    #: the pinned SSH host key (type and base64 blob, as in known_hosts); a connection
    #: meeting another key is refused before any password is sent (app/host_keys.py)
    host_key_type: Mapped[str | None] = mapped_column(String(64))
    host_key: Mapped[str | None] = mapped_column(Text)
    #: when the pinned key was first seen (learned) or accepted or set by an admin
    host_key_seen_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    #: how it was pinned: learned (trust on first use), accepted or set by an admin
    host_key_source: Mapped[str | None] = mapped_column(String(16))
    #: the last key a refused connection was offered, for an admin to accept
    host_key_pending_type: Mapped[str | None] = mapped_column(String(64))
    host_key_pending: Mapped[str | None] = mapped_column(Text)
    host_key_pending_seen_at: Mapped[datetime | None] = mapped_column(TZDateTime)

    tags: Mapped[list[Tag]] = relationship(secondary=device_tags, order_by=Tag.name)
    #: its latest config backup (None: never backed up)
    backup: Mapped[DeviceBackup | None] = relationship(
        "DeviceBackup", uselist=False, viewonly=True, lazy="selectin"
    )

    __table_args__ = (
        CheckConstraint("port BETWEEN 1 AND 65535", name="port"),
        CheckConstraint(
            "(host_key IS NULL) = (host_key_type IS NULL) "
            "AND (host_key IS NULL) = (host_key_source IS NULL) "
            "AND host_key_source IN ('learned', 'accepted', 'set')",
            name="host_key",
        ),
        CheckConstraint(
            "(host_key_pending IS NULL) = (host_key_pending_type IS NULL)",
            name="host_key_pending",
        ),
    )

    @property
    def pinned_host_key(self) -> HostKey | None:
        if self.host_key is None or self.host_key_type is None:
            return None
        return HostKey(type=self.host_key_type, key=self.host_key)

    @property
    def pending_host_key(self) -> HostKey | None:
        if self.host_key_pending is None or self.host_key_pending_type is None:
            return None
        return HostKey(type=self.host_key_pending_type, key=self.host_key_pending)

    @property
    def host_key_approved(self) -> bool:
        """An admin accepted or set the pinned key (strict mode trusts only these)."""
        return self.host_key_source in HOST_KEY_APPROVED


class DeviceBackup(db.Model):
    """A device's latest config backup: written by a trigger on device_results (migration
    0012), read by pages, the API and the dashboard."""

    __tablename__ = "device_backups"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    last_run_id: Mapped[int | None] = mapped_column(Integer)
    last_at: Mapped[datetime] = mapped_column(TZDateTime)
    #: the device result's status: success, failed, unreachable, ...
    last_status: Mapped[str] = mapped_column(String(32))
    last_success_at: Mapped[datetime | None] = mapped_column(TZDateTime, index=True)
    #: the commit holding the device's latest backed-up config
    last_commit: Mapped[str | None] = mapped_column(String(64))


class LatestConfig(db.Model):
    """A device's latest backed-up config (the text in git at ``commit``), kept by the
    backup's commit for the config search (app/services/config_search.py)."""

    __tablename__ = "latest_configs"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    commit: Mapped[str] = mapped_column(String(64))
    committed_at: Mapped[datetime] = mapped_column(TZDateTime)
    body: Mapped[str] = mapped_column(Text)


#: how bad a broken compliance rule is, mildest first
SEVERITIES = ("low", "medium", "high", "critical")


class ComplianceRule(db.Model):
    """What every config in its scope must (``required``) or must not (``forbidden``)
    hold, or a drop-in Python rule module's registration (``module_path``); see
    app/compliance/ and app/services/compliance.py."""

    __tablename__ = "compliance_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16), default="medium")
    #: canonical platform keys; empty: every platform
    platforms: Mapped[list[str]] = mapped_column(JSONB, default=list)
    #: tag names; empty: every device, else a device needs one of them
    tags: Mapped[list[str]] = mapped_column(JSONB, default=list)
    required: Mapped[str] = mapped_column(Text, default="")
    forbidden: Mapped[str] = mapped_column(Text, default="")
    #: a Python rule module's file (its rule is edited in the file, not here)
    module_path: Mapped[str | None] = mapped_column(Text)
    #: why a module rule is not checked now (broken or gone); None: it is
    skipped_reason: Mapped[str | None] = mapped_column(Text)
    #: bumped by every edit: results of an older version are being re-checked
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100), default="")

    __table_args__ = (
        CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')", name="severity"),
    )


class ComplianceResult(db.Model):
    """A device's latest compliance with one rule (one row per device and rule in
    scope), computed on the config at ``commit``."""

    __tablename__ = "compliance_results"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("compliance_rules.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    commit: Mapped[str] = mapped_column(String(64))
    checked_at: Mapped[datetime] = mapped_column(TZDateTime)
    rule_version: Mapped[int] = mapped_column(Integer)
    compliant: Mapped[bool] = mapped_column(Boolean)
    missing: Mapped[list[str]] = mapped_column(JSONB, default=list)
    unexpected: Mapped[list[str]] = mapped_column(JSONB, default=list)
    remediation: Mapped[str] = mapped_column(Text, default="")
    #: why the check itself could not run (a rule module that raised)
    error: Mapped[str | None] = mapped_column(Text)


class ComplianceChange(db.Model):
    """A device falling out of or coming back into compliance with a rule (and its
    first check): the history pages and webhooks tell."""

    __tablename__ = "compliance_changes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    rule_id: Mapped[int] = mapped_column(ForeignKey("compliance_rules.id", ondelete="CASCADE"))
    commit: Mapped[str] = mapped_column(String(64))
    compliant: Mapped[bool] = mapped_column(Boolean)
    missing: Mapped[list[str]] = mapped_column(JSONB, default=list)
    unexpected: Mapped[list[str]] = mapped_column(JSONB, default=list)
    #: the run whose check saw it (a backup or a compliance check)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id", ondelete="SET NULL"))

    __table_args__ = (
        Index("ix_compliance_changes_device_id_at", "device_id", "at"),
        Index("ix_compliance_changes_rule_id", "rule_id"),
    )


class ChangeStatus(enum.StrEnum):
    """Where a change set is in its life."""

    #: being written; may be edited and previewed
    DRAFT = "draft"
    #: submitted: waits for someone other than its author to approve it
    AWAITING_APPROVAL = "awaiting_approval"
    #: approved (for this version of its text): may be applied
    APPROVED = "approved"
    #: turned down by a reviewer (an edit makes it a draft again)
    REJECTED = "rejected"


class Change(db.Model):
    """A change set: a template of commands for many devices, its checks and rollout
    plan, and who wrote and approved it (app/services/changes.py)."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default=ChangeStatus.DRAFT.value)
    #: tag names and device ids the change targets (enabled devices with any of them)
    target_tags: Mapped[list[str]] = mapped_column(JSONB, default=list)
    target_device_ids: Mapped[list[int]] = mapped_column(JSONB, default=list)
    #: Jinja2, rendered per device (device.name, .host, .platform, .tags and variables)
    template: Mapped[str] = mapped_column(Text)
    #: the secret ones (``secret_variables``) sealed with the instance's key
    variables: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    #: names of variables whose values are secrets: never shown, logged or stored in clear
    secret_variables: Mapped[list[str]] = mapped_column(JSONB, default=list)
    #: [{"command", "expect" (a regular expression), "absent" (bool)}], run before and after
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    canary: Mapped[int] = mapped_column(Integer, default=1)
    wave_size: Mapped[int] = mapped_column(Integer, default=10)
    pause_seconds: Mapped[int] = mapped_column(Integer, default=0)
    max_failed: Mapped[int] = mapped_column(Integer, default=1)
    #: "device": roll back the failed device only; "all": every changed device too
    rollback: Mapped[str] = mapped_column(String(16), default="device")
    #: after the push, a new login to the device must work (the change must not lock
    #: Rookery out: AAA, ACLs on the vty lines, the management interface)
    reachability: Mapped[bool] = mapped_column(Boolean, default=False)
    #: bumped by every edit of what the change does; an approval is for one version
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    reviewed_by: Mapped[str | None] = mapped_column(String(100))
    reviewed_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    review_note: Mapped[str] = mapped_column(Text, default="")
    #: the job whose runs apply this change (made by the first apply)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    #: the latest apply's run: the only run allowed to touch devices for this change
    run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id", ondelete="SET NULL"))

    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'awaiting_approval', 'approved', 'rejected')", name="status"
        ),
        CheckConstraint("rollback IN ('device', 'all')", name="rollback"),
    )


class ChangeDeviceState(enum.StrEnum):
    """Where one device is in one apply of a change (app/jobs/change_apply.py)."""

    #: in a later wave, not reached yet
    PENDING = "pending"
    #: its snapshot is taken and commands may have been sent: a run that dies here leaves
    #: the device uncertain (shown as such, never assumed either way)
    PUSHING = "pushing"
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"
    #: loud: the device's config differs from its snapshot and needs a person
    ROLLBACK_FAILED = "rollback_failed"
    #: its pre-checks failed, or no snapshot could be taken: nothing was sent
    FAILED_PRECHECK = "failed_precheck"
    #: the rollout stopped before its wave (failure budget spent, cancelled)
    NOT_ATTEMPTED = "not_attempted"


class ChangeDevice(db.Model):
    """One device of one apply run of a change: its wave, state, commands, the
    snapshot its rollback restores and the before/after commits in the config store."""

    __tablename__ = "change_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(ForeignKey("job_runs.id", ondelete="CASCADE"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    device_name: Mapped[str] = mapped_column(String(128))
    #: 0 is the canary, then 1, 2...
    wave: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32), default=ChangeDeviceState.PENDING.value)
    #: the rendered commands (secrets as the template wrote them: shown to operators only)
    commands: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text, default="")
    #: the running config before the change, normalised but not redacted (a rollback
    #: restores secrets too), encrypted like credentials; dropped once the run ends
    snapshot_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: the device's native checkpoint (IOS: flash:<name>), None without one
    checkpoint: Mapped[str | None] = mapped_column(String(255))
    #: how it was rolled back: native, line_by_line
    rollback_method: Mapped[str | None] = mapped_column(String(32))
    #: the config store's commits holding the config before and after
    before_commit: Mapped[str | None] = mapped_column(String(64))
    after_commit: Mapped[str | None] = mapped_column(String(64))
    #: checks' results and what each step said (JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("run_id", "device_id", name="uq_change_devices_run_device"),
        Index("ix_change_devices_change_id", "change_id"),
        CheckConstraint(
            "state IN ('pending', 'pushing', 'applied', 'rolled_back', 'rollback_failed', "
            "'failed_precheck', 'not_attempted')",
            name="state",
        ),
    )


class Credential(db.Model):
    """Login for devices sharing one of its tags; secrets are Fernet-encrypted."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    username: Mapped[str] = mapped_column(String(128))
    password_enc: Mapped[bytes] = mapped_column(LargeBinary)
    enable_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: lower tries first
    priority: Mapped[int] = mapped_column(Integer, default=100)
    success_count: Mapped[int] = mapped_column(Integer, default=0)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)

    tags: Mapped[list[Tag]] = relationship(secondary=credential_tags, order_by=Tag.name)


class DeviceCircuit(db.Model):
    """Circuit breaker of one device, shared by every worker."""

    __tablename__ = "device_circuits"

    device_id: Mapped[int] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    open_until: Mapped[datetime | None] = mapped_column(TZDateTime)
    last_failure_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


# ----------------------------------------------------------------------------- work

job_target_tags = Table(
    "job_target_tags",
    db.metadata,
    Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True),
)

job_target_devices = Table(
    "job_target_devices",
    db.metadata,
    Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("device_id", ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True, index=True),
)

job_credentials = Table(
    "job_credentials",
    db.metadata,
    Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "credential_id",
        ForeignKey("credentials.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)

job_dependencies = Table(
    "job_dependencies",
    db.metadata,
    Column("job_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "depends_on_id", ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True, index=True
    ),
    CheckConstraint("job_id <> depends_on_id", name="not_self"),
)


#: the most devices one run works on at once (each worker also has its own limit,
#: ROOKERY_WORKER_DEVICE_LIMIT): 100 sessions at once is a large fleet's usual backup
MAX_PARALLEL = 256


class Job(db.Model):
    """A saved job definition: what to run, on what, how."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[list[str]] = mapped_column(JSONB, default=list)
    job_type: Mapped[str] = mapped_column(String(64), index=True)
    #: validated parameters; secret ones hold Fernet tokens, never clear text
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=Priority.NORMAL.value)
    #: None: the configured default
    max_retries: Mapped[int | None] = mapped_column(Integer)
    retry_delay_seconds: Mapped[int | None] = mapped_column(Integer)
    retry_max_delay_seconds: Mapped[int | None] = mapped_column(Integer)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    #: devices worked on at once within one run (at most MAX_PARALLEL); None: the
    #: worker's limit
    max_parallel: Mapped[int | None] = mapped_column(Integer)
    #: refuse a second run while one is queued or running
    no_overlap: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)

    target_tags: Mapped[list[Tag]] = relationship(secondary=job_target_tags, order_by=Tag.name)
    target_devices: Mapped[list[Device]] = relationship(
        secondary=job_target_devices, order_by=Device.name
    )
    credentials: Mapped[list[Credential]] = relationship(
        secondary=job_credentials, order_by=Credential.priority
    )
    depends_on: Mapped[list[Job]] = relationship(
        secondary=job_dependencies,
        primaryjoin=lambda: Job.id == job_dependencies.c.job_id,
        secondaryjoin=lambda: Job.id == job_dependencies.c.depends_on_id,
    )
    owner: Mapped[User | None] = relationship()

    __table_args__ = (CheckConstraint("priority BETWEEN 0 AND 100", name="priority"),)


class Schedule(db.Model):
    """When a job runs by itself: every N minutes, a cron expression, or once."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    interval_minutes: Mapped[int | None] = mapped_column(Integer)
    cron: Mapped[str | None] = mapped_column(String(128))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    run_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    next_fire_at: Mapped[datetime | None] = mapped_column(TZDateTime, index=True)
    last_fire_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)

    # Deleting a job deletes its schedules (the database cascades; the ORM must not try
    # to keep them with job_id NULL).
    job: Mapped[Job] = relationship(
        backref=backref("schedules", cascade="all, delete-orphan", passive_deletes=True)
    )

    __table_args__ = (
        CheckConstraint("kind IN ('interval', 'cron', 'once')", name="kind"),
        CheckConstraint(
            "(kind = 'interval' AND interval_minutes >= 1)"
            " OR (kind = 'cron' AND cron IS NOT NULL)"
            " OR (kind = 'once' AND run_at IS NOT NULL)",
            name="shape",
        ),
    )


class ScheduleFire(db.Model):
    """One fire time of a schedule: unique, so any number of workers fire it once."""

    __tablename__ = "schedule_fires"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    fire_at: Mapped[datetime] = mapped_column(TZDateTime)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("schedule_id", "fire_at", name="uq_schedule_fires_slot"),)


run_dependencies = Table(
    "run_dependencies",
    db.metadata,
    Column("run_id", ForeignKey("job_runs.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "depends_on_run_id",
        ForeignKey("job_runs.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
)


class JobRun(db.Model):
    """One execution of a job (all its attempts)."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    #: copies, so the run stays readable after its job is deleted
    job_name: Mapped[str] = mapped_column(String(128))
    job_type: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    #: restricts the run to these devices (relaunch of failed devices, API)
    device_ids: Mapped[list[int] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(32), default=RunStatus.PENDING.value)
    priority: Mapped[int] = mapped_column(Integer, default=Priority.NORMAL.value)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    #: backoff: the first retry waits retry_delay_seconds, each next one twice as long,
    #: never more than retry_max_delay_seconds
    retry_delay_seconds: Mapped[int] = mapped_column(Integer, default=30)
    retry_max_delay_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    scheduled_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    started_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    #: some run waits (or waited) for this one (see lifecycle.finish_global)
    has_dependants: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    #: when the current attempt was claimed (the reconciler's clock for its timeout)
    attempt_started_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    error_traceback: Mapped[str | None] = mapped_column(Text)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    #: credential resolution figures: resolved, total, percentage
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: "user:alice", "schedule:4", "api:bob", "dependency:17", "relaunch:12"
    triggered_by: Mapped[str] = mapped_column(String(128), default="")
    triggered_by_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    #: correlation id from the request or tick that started it, through every retry
    signal_id: Mapped[str] = mapped_column(String(64), index=True)
    procrastinate_job_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    relaunch_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("job_runs.id", ondelete="SET NULL")
    )
    worker_name: Mapped[str | None] = mapped_column(String(128))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(100))

    job: Mapped[Job | None] = relationship()
    depends_on: Mapped[list[JobRun]] = relationship(
        secondary=run_dependencies,
        primaryjoin=lambda: JobRun.id == run_dependencies.c.run_id,
        secondaryjoin=lambda: JobRun.id == run_dependencies.c.depends_on_run_id,
    )

    __table_args__ = (
        Index("ix_job_runs_status", "status"),
        Index("ix_job_runs_job_id_created_at", "job_id", "created_at"),
        Index("ix_job_runs_created_at", "created_at"),
    )

    @property
    def run_status(self) -> RunStatus:
        return RunStatus(self.status)


class DeviceResult(db.Model):
    """What one run did on one device."""

    __tablename__ = "device_results"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("job_runs.id", ondelete="CASCADE"))
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True
    )
    device_name: Mapped[str] = mapped_column(String(128))
    #: success, failed, skipped, no_credentials, unreachable, auth_failed, cancelled, timeout,
    #: host_key_changed, host_key_unapproved
    status: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    credential_name: Mapped[str | None] = mapped_column(String(128))
    output: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    changed: Mapped[bool | None] = mapped_column(Boolean)
    connect_attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("run_id", "device_id", name="uq_device_results_run_device"),
        Index("ix_device_results_run_id", "run_id"),
    )


class JobLog(db.Model):
    """One log line: from a job module (log_type 'job') or a part of Rookery."""

    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    level: Mapped[str] = mapped_column(String(10))
    #: job, runner, dispatcher, scheduler, system, ...
    log_type: Mapped[str] = mapped_column(String(32))
    #: worker.job.<job_type>, worker.runner, web, ...
    source: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id", ondelete="CASCADE"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    job_type: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))

    __table_args__ = (
        CheckConstraint("level IN ('debug', 'info', 'warning', 'error', 'critical')", name="level"),
        Index("ix_job_logs_run_id_id", "run_id", "id"),
        Index("ix_job_logs_at", "at"),
        Index("ix_job_logs_log_type_source", "log_type", "source"),
        Index("ix_job_logs_device_id", "device_id"),
    )


class Event(db.Model):
    """A run's structured event trail, kept longer than the runs (compliance record)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    #: job.created, job.queued, job.started, job.progress, job.completed, job.failed, ...
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("job_runs.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    actor: Mapped[str | None] = mapped_column(String(100))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    exception: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    pre_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    post_data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    signal_id: Mapped[str | None] = mapped_column(String(64), index=True)

    __table_args__ = (
        Index("ix_events_run_id_id", "run_id", "id"),
        Index("ix_events_at", "at"),
        Index("ix_events_type", "type"),
    )


class Webhook(db.Model):
    """A URL told (HMAC-signed) about a job's failures, timeouts or config changes."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    #: failure, timeout, config_changed
    events: Mapped[list[str]] = mapped_column(JSONB, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)


class CommandRule(db.Model):
    """An admin's allow or deny rule for run_commands (see app/command_policy.py)."""

    __tablename__ = "command_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    #: the command's first words, lower case, single spaces
    words: Mapped[str] = mapped_column(String(200))
    #: a canonical platform key (cisco_ios, juniper_junos...); None: every platform
    platform: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("kind IN ('allow', 'deny')", name="kind"),
        # one rule per kind, words and platform (NULL, every platform, counted as one)
        Index("uq_command_rules", "kind", "words", text("coalesce(platform, '')"), unique=True),
    )


class MaintenanceState(db.Model):
    """When a periodic chore (retention cleanup, stalled-run check) last ran, cluster-wide."""

    __tablename__ = "maintenance_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime | None] = mapped_column(TZDateTime)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


# -------------------------------------------------------------------------- queries


def user_by_name(username: str) -> Select[tuple[User]]:
    """The user with this name, compared case-insensitively."""
    return select(User).where(func.lower(User.username) == username.strip().lower())


def count_users() -> Select[tuple[int]]:
    return select(func.count()).select_from(User)
