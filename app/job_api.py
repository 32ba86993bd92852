"""What job modules are handed: the logger and the device object (re-exported by app.jobs)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import update
from sqlalchemy.orm import Session

from app import audit, database, events, logs
from app.engine import fence
from app.errors import RookeryError
from app.extensions import db
from app.models import JobRun, RunStatus, utcnow
from app.ssh_keys import HostKey

logger = logging.getLogger(__name__)


class NotRetryable(RookeryError):
    """This failure would fail again (bad input, unsupported device): no retry."""


#: A job's log line; the run's job is read inside the INSERT (no extra round trip, never
#: stale). Inside a unit (``attempt`` set, see engine/fence.py) it is written only while
#: that attempt is current. RETURNING gives ``autocommit_row`` its row (or None).
_LOG_SQL = """
    INSERT INTO job_logs (at, level, log_type, source, message, meta, run_id, job_id,
        job_type, device_id)
    SELECT %(at)s, %(level)s, 'job', %(source)s, %(message)s, %(meta)s, %(run_id)s,
        (SELECT job_id FROM job_runs WHERE id = %(run_id)s), %(job_type)s, %(device_id)s
    WHERE %(attempt)s::integer IS NULL OR EXISTS (SELECT 1 FROM job_runs
        WHERE id = %(run_id)s AND status = 'RUNNING' AND attempt = %(attempt)s::integer)
    RETURNING id
"""


class JobLogger:
    """Log lines of one run (and optionally one device), written as they happen.

    Each line commits in a short transaction of its own, so it shows live and
    survives the rollback of the unit that logged it.
    """

    def __init__(self, job_id: int, job_type: str, device_id: int | None = None) -> None:
        if not job_id or not job_type:
            raise ValueError("JobLogger needs the run's job_id and the job_type")
        self.run_id = int(job_id)
        self.job_type = job_type
        self.device_id = device_id
        self.source = f"worker.job.{job_type}"
        self._py_logger = logging.getLogger(f"rookery.job.{job_type}")

    def log(self, level: str, message: str, meta: dict[str, Any] | None = None) -> None:
        """Write one line at ``level`` (debug, info, warning, error, critical)."""
        level = logs.normalize_level(level)
        safe_meta = audit.redact(meta) if meta else None
        # One autocommit INSERT on a pooled driver connection: committed on its own (the
        # unit's rollback cannot take it back), its trigger's NOTIFY sent as it commits,
        # and no BEGIN, COMMIT or ORM flush around it (one round trip, not three, and
        # about 1.5 ms less CPU per line under the GIL the run's threads share).
        attempt = fence.attempt_for(self.run_id)
        row = database.autocommit_row(
            _LOG_SQL,
            {
                "at": utcnow(),
                "level": level,
                "source": self.source,
                "message": str(message),
                "meta": Jsonb(safe_meta),  # None as JSON null, as the ORM wrote it
                "run_id": self.run_id,
                "job_type": self.job_type,
                "device_id": self.device_id,
                "attempt": attempt,
            },
        )
        if row is None and attempt is not None:
            raise fence.AttemptSuperseded(self.run_id, attempt)
        self._py_logger.log(logging.getLevelName(level.upper()), "run %s: %s", self.run_id, message)

    def debug(self, message: str, meta: dict[str, Any] | None = None) -> None:
        self.log("debug", message, meta)

    def info(self, message: str, meta: dict[str, Any] | None = None) -> None:
        self.log("info", message, meta)

    def warning(self, message: str, meta: dict[str, Any] | None = None) -> None:
        self.log("warning", message, meta)

    def error(self, message: str, meta: dict[str, Any] | None = None) -> None:
        self.log("error", message, meta)

    def progress(self, done: int, total: int) -> None:
        """Report how far a global job is (pages show it as a progress bar)."""
        done, total = max(0, int(done)), max(0, int(total))
        attempt = fence.attempt_for(self.run_id)
        with Session(db.engine) as session:
            query = update(JobRun).where(JobRun.id == self.run_id)
            if attempt is not None:  # inside a unit: only while its attempt is current
                query = query.where(
                    JobRun.status == RunStatus.RUNNING.value, JobRun.attempt == attempt
                )
            updated = session.execute(query.values(progress_done=done, progress_total=total))
            if attempt is not None and not updated.rowcount:
                session.rollback()
                raise fence.AttemptSuperseded(self.run_id, attempt)
            run = session.get(JobRun, self.run_id)
            if run is not None:
                events.record(
                    session,
                    run,
                    events.PROGRESS,
                    f"{done}/{total}",
                    data={"done": done, "total": total},
                )
            session.commit()


@dataclass(frozen=True)
class ResolvedCredential:
    """One credential a device may use, decrypted for this run only."""

    id: int
    name: str
    username: str
    password: str = field(repr=False)
    enable_secret: str | None = field(default=None, repr=False)
    priority: int = 100


@dataclass(frozen=True)
class Wave:
    """A group of a run's devices that runs before the next group starts.

    A job module's ``waves(run_id, targets, config, db)`` generator yields them; the
    runner asks for the next wave once every unit of this one has ended (so the
    generator can read their results first), after waiting ``pause_seconds`` (a cancel
    or the timeout stops the wait). Devices never put in a wave end as ``skipped`` with
    the generator's return value as the reason. ``action="rollback"`` runs the module's
    ``rollback(device, run_id, config, db)`` instead of ``run`` on devices that already
    ran; their new result replaces the earlier one.
    """

    device_ids: tuple[int, ...]
    label: str
    pause_seconds: float = 0.0
    action: str = "run"


@dataclass
class DeviceTarget:
    """The device a device job's ``run()`` gets: inventory facts and its credentials."""

    id: int
    name: str
    host: str
    port: int
    platform: str
    driver: str = "netmiko"
    tags: tuple[str, ...] = ()
    credentials: tuple[ResolvedCredential, ...] = ()
    #: the SSH host key pinned for the device (``app.ssh_keys.HostKey``), if any; a
    #: connection that meets another key is refused before any password is sent
    host_key: HostKey | None = None
    #: whether an admin approved that key (accepted, set or imported it): strict mode
    #: (``ROOKERY_SSH_HOST_KEYS=strict``) trusts only approved keys
    host_key_approved: bool = False
    #: filled in by connect(): the credential that worked, and how many tries it took
    used_credential: str | None = None
    connect_attempts: int = 0
    #: set by the runner: opens a driver session trying the credentials in order
    connector: Callable[[DeviceTarget], Any] | None = field(default=None, repr=False)
    #: set by the runner: told of every session opened/closed, so a cancel or a
    #: timeout can close sessions still in flight
    on_session_open: Callable[[Any], None] | None = field(default=None, repr=False)
    on_session_close: Callable[[Any], None] | None = field(default=None, repr=False)

    def connect(self) -> Any:
        """A driver session (netmiko by default), logged in with the first credential
        that works and in enable mode; close it (or use it as a context manager)."""
        if self.connector is None:
            raise RuntimeError(f"no driver is available for device {self.name}")
        session = self.connector(self)
        if self.on_session_open is not None:
            self.on_session_open(session)
        return session
