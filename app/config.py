"""Settings: one table of every setting Rookery reads from the environment.

The same table builds the Flask config, validates it with one clear message per bad
value, and is what the README's settings table lists (a test keeps them in step).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ConfigError

logger = logging.getLogger(__name__)


def _to_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _to_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def _to_positive_int(raw: str) -> int:
    value = _to_int(raw)
    if value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def _to_non_negative_int(raw: str) -> int:
    value = _to_int(raw)
    if value < 0:
        raise ValueError("expected a whole number of at least 0")
    return value


def _to_str(raw: str) -> str:
    return raw


def _to_host_key_mode(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"tofu", "strict"}:
        raise ValueError("expected tofu or strict")
    return value


def _to_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def _to_webhook_allow(raw: str) -> str:
    from app import webhook_guard

    return webhook_guard.validate_setting(raw)


@dataclass(frozen=True, kw_only=True)
class Setting:
    """One environment setting: its variable, default, parser and meaning."""

    env: str
    default: Any
    parse: Callable[[str], Any]
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        env="DATABASE_URL",
        default=None,
        parse=_to_str,
        help="PostgreSQL URL (`postgresql://user@host:5432/db`). Unset: an embedded "
        "PostgreSQL is started with its data in `<instance>/pgdata`.",
        secret=True,
    ),
    Setting(
        env="ROOKERY_INSTANCE",
        default=None,
        parse=_to_str,
        help="Instance folder: secret key, encryption key, embedded database, config store. "
        "Unset: `./instance` of the current folder or the nearest folder above holding one; "
        "only `rookery run`, `web`, `worker`, `demo` and `db` create `./instance` when none "
        "is found.",
    ),
    Setting(
        env="ROOKERY_SECRET_KEY",
        default=None,
        parse=_to_str,
        help="Flask session signing key. Unset: generated once into `<instance>/secret_key` "
        "(mode 0600).",
        secret=True,
    ),
    Setting(
        env="ROOKERY_ENCRYPTION_KEY",
        default=None,
        parse=_to_str,
        help="Fernet key that encrypts device passwords at rest. Unset: generated once into "
        "`<instance>/encryption.key` (mode 0600).",
        secret=True,
    ),
    Setting(
        env="ROOKERY_JOBS_PATH",
        default="",
        parse=_to_str,
        help="Extra folders of job modules, separated by `os.pathsep` (`:` on Linux).",
    ),
    Setting(
        env="ROOKERY_PLATFORM_PROFILES_DIR",
        default="",
        parse=_to_str,
        help="Folder of platform profiles (`<device type>.toml`) that add platforms or change "
        "built-in ones without code; a file named like a built-in profile changes only the "
        "keys it sets. Unset: the built-in profiles alone.",
    ),
    Setting(
        env="ROOKERY_COMPLIANCE_RULES_PATH",
        default="",
        parse=_to_str,
        help="Folder of drop-in Python compliance rule modules. Unset: "
        "`<instance>/compliance_rules`.",
    ),
    Setting(
        env="ROOKERY_SSE_MAX_CLIENTS",
        default=500,
        parse=_to_positive_int,
        help="Live streams (SSE) one web process serves at once; more get 503. Under "
        "gunicorn each stream holds a thread: give it `--threads` to match.",
    ),
    Setting(
        env="ROOKERY_SSE_HEARTBEAT_SECONDS",
        default=15,
        parse=_to_positive_int,
        help="Seconds between heartbeat comments on an idle live stream (keeps proxies open).",
    ),
    Setting(
        env="ROOKERY_SSE_MAX_SECONDS",
        default=900,
        parse=_to_positive_int,
        help="A live stream ends after this long; the browser reconnects at once and "
        "resumes from its last event, so no thread is held forever.",
    ),
    Setting(
        env="ROOKERY_WORKER_CONCURRENCY",
        default=8,
        parse=_to_positive_int,
        help="Runs one worker process executes at once (its thread pool is sized to match).",
    ),
    Setting(
        env="ROOKERY_WORKER_GRACE_SECONDS",
        default=30,
        parse=_to_non_negative_int,
        help="On SIGTERM/Ctrl-C, how long a worker lets runs in flight finish before it "
        "aborts them so another worker retries them (it keeps heartbeating meanwhile).",
    ),
    Setting(
        env="ROOKERY_WORKER_STALLED_SECONDS",
        default=30,
        parse=_to_positive_int,
        help="A worker silent this long (no heartbeat; one every few seconds) counts as "
        "dead: the reconciler gives its runs a new attempt or ends them.",
    ),
    Setting(
        env="ROOKERY_CONFIG_PUSH_RETRY_SECONDS",
        default=60,
        parse=_to_positive_int,
        help="When a push to ROOKERY_CONFIG_REMOTE failed, how often a worker tries again "
        "(the commits are kept locally meanwhile).",
    ),
    Setting(
        env="ROOKERY_DEFAULT_RETRIES",
        default=2,
        parse=_to_non_negative_int,
        help="Retries of a failed run when its job sets none.",
    ),
    Setting(
        env="ROOKERY_RETRY_DELAY_SECONDS",
        default=30,
        parse=_to_positive_int,
        help="First retry delay; each further retry doubles it (exponential backoff).",
    ),
    Setting(
        env="ROOKERY_RETRY_MAX_DELAY_SECONDS",
        default=3600,
        parse=_to_positive_int,
        help="Longest wait between two attempts, however many retries came before.",
    ),
    Setting(
        env="ROOKERY_REQUIRE_JOB_TYPES",
        default=False,
        parse=_to_bool,
        help="Refuse to start when no valid job type module is found.",
    ),
    Setting(
        env="ROOKERY_JOB_TIMEOUT_SECONDS",
        default=900,
        parse=_to_positive_int,
        help="Timeout of a run when its job sets none.",
    ),
    Setting(
        env="ROOKERY_JOB_TIMEOUT_MAX_SECONDS",
        default=7200,
        parse=_to_positive_int,
        help="Largest timeout any job may set.",
    ),
    Setting(
        env="ROOKERY_DEPENDENCY_MAX_WAIT_MINUTES",
        default=1440,
        parse=_to_positive_int,
        help="A run waiting for other runs longer than this is cancelled.",
    ),
    Setting(
        env="ROOKERY_CONFIG_REPO",
        default="",
        parse=_to_str,
        help="Git repository of device configs. Unset: `<instance>/configs`.",
    ),
    Setting(
        env="ROOKERY_CONFIG_REMOTE",
        default="",
        parse=_to_str,
        help="Git remote URL the config store pushes to after each commit (workers on "
        "several hosts share one history). Unset: no push.",
    ),
    Setting(
        env="ROOKERY_CONFIG_REDACT_SECRETS",
        default=True,
        parse=_to_bool,
        help="Replace passwords, secrets and SNMP communities in stored configs by `<removed>`.",
    ),
    Setting(
        env="ROOKERY_SSH_CONNECT_TIMEOUT",
        default=10,
        parse=_to_positive_int,
        help="Seconds to open an SSH session to a device.",
    ),
    Setting(
        env="ROOKERY_SSH_READ_TIMEOUT",
        default=60,
        parse=_to_positive_int,
        help="Seconds a device may take to answer one command.",
    ),
    Setting(
        env="ROOKERY_SSH_LEGACY_ALGORITHMS",
        default=False,
        parse=_to_bool,
        help="Offer old SSH algorithms (ssh-rsa with SHA-1) for old devices.",
    ),
    Setting(
        env="ROOKERY_SSH_HOST_KEYS",
        default="tofu",
        parse=_to_host_key_mode,
        help="Which SSH host keys are trusted. `tofu`: a device's first key is pinned, and a "
        "different one later is refused before any password is sent. `strict`: only keys an "
        "admin accepted or set; a device without one is refused (its key is shown for an "
        "admin to accept).",
    ),
    Setting(
        env="ROOKERY_CONNECT_RETRIES",
        default=2,
        parse=_to_non_negative_int,
        help="Retries of a device connection that failed (not an authentication failure) "
        "within one attempt, with backoff.",
    ),
    Setting(
        env="ROOKERY_CIRCUIT_FAILURES",
        default=3,
        parse=_to_positive_int,
        help="Consecutive connection failures after which a device is skipped for the cool-down.",
    ),
    Setting(
        env="ROOKERY_CIRCUIT_COOLDOWN_SECONDS",
        default=300,
        parse=_to_positive_int,
        help="How long a device whose circuit opened is skipped.",
    ),
    Setting(
        env="ROOKERY_WORKER_DEVICE_LIMIT",
        default=32,
        parse=_to_positive_int,
        help="Device sessions one worker process holds open at once, across all its runs.",
    ),
    Setting(
        env="ROOKERY_RETENTION_RUNS_DAYS",
        default=90,
        parse=_to_positive_int,
        help="Days finished runs and their device results are kept.",
    ),
    Setting(
        env="ROOKERY_RETENTION_LOGS_DAYS",
        default=30,
        parse=_to_positive_int,
        help="Days job and system log lines are kept.",
    ),
    Setting(
        env="ROOKERY_RETENTION_QUEUE_DAYS",
        default=7,
        parse=_to_positive_int,
        help="Days finished queue entries (procrastinate jobs) are kept.",
    ),
    Setting(
        env="ROOKERY_RETENTION_EVENTS_DAYS",
        default=365,
        parse=_to_positive_int,
        help="Days run events are kept (the compliance record).",
    ),
    Setting(
        env="ROOKERY_RETENTION_AUDIT_DAYS",
        default=730,
        parse=_to_positive_int,
        help="Days the audit trail of people's changes is kept.",
    ),
    Setting(
        env="ROOKERY_CLEANUP_INTERVAL_MINUTES",
        default=60,
        parse=_to_positive_int,
        help="Minutes between retention cleanups.",
    ),
    Setting(
        env="ROOKERY_EVENT_LOGGING",
        default=True,
        parse=_to_bool,
        help="Write run events (`job.started`, `job.completed`, ...). `false` turns them off.",
    ),
    Setting(
        env="ROOKERY_LOGIN_MAX_FAILURES",
        default=5,
        parse=_to_positive_int,
        help="Failed logins for one user name from one address before each further try "
        "waits (a first delay, doubled after every failure). Other addresses are not slowed.",
    ),
    Setting(
        env="ROOKERY_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default=20,
        parse=_to_positive_int,
        help="Failed logins from one address, for any user names, before every login "
        "from it waits the same growing delays.",
    ),
    Setting(
        env="ROOKERY_LOGIN_DELAY_SECONDS",
        default=30,
        parse=_to_positive_int,
        help="First wait once a login limit is reached; it doubles with each further failure.",
    ),
    Setting(
        env="ROOKERY_LOGIN_WINDOW_SECONDS",
        default=900,
        parse=_to_positive_int,
        help="Failed logins older than this are forgotten; also the longest wait.",
    ),
    Setting(
        env="ROOKERY_TRUSTED_PROXIES",
        default=0,
        parse=_to_non_negative_int,
        help="Reverse proxies in front of the web server, each setting `X-Forwarded-For` "
        "and `X-Forwarded-Proto`. With N > 0 the client address and scheme are read from "
        "those headers, N entries from the end, so login throttling and the audit trail see "
        "real addresses; 0 trusts no such header.",
    ),
    Setting(
        env="ROOKERY_METRICS_TOKEN",
        default=None,
        parse=_to_str,
        help="Bearer token `/metrics` requires (`Authorization: Bearer ...`). Unset: "
        "`/metrics` is open, like most exporters (counts by job type and status: no device "
        "names, no secrets).",
        secret=True,
    ),
    Setting(
        env="ROOKERY_COOKIE_SECURE",
        default=False,
        parse=_to_bool,
        help="Mark the session and remember-me cookies `Secure` (sent over HTTPS only). "
        "Turn on in production behind TLS; off for plain http on 127.0.0.1.",
    ),
    Setting(
        env="ROOKERY_CHANGE_SELF_APPROVAL",
        default=False,
        parse=_to_bool,
        help="Let a change set's author approve it (for labs). Off: another operator or an "
        "admin must.",
    ),
    Setting(
        env="ROOKERY_WEBHOOK_ALLOW",
        default="",
        parse=_to_webhook_allow,
        help="Internal webhook receivers an admin allows: comma-separated networks (CIDR), "
        "addresses and host names, e.g. `127.0.0.1/32,10.20.0.0/16,hooks.internal`. "
        "Unset: webhooks may only target public addresses (no loopback, private, "
        "link-local, CGNAT, multicast or reserved one), checked on save and on every "
        "delivery against every address the name resolves to.",
    ),
    Setting(
        env="ROOKERY_ADMIN_PASSWORD",
        default=None,
        parse=_to_str,
        help="Password of the `admin` account the first `rookery run` creates. Unset: "
        "generated and printed once.",
        secret=True,
    ),
    Setting(
        env="ROOKERY_LOG_LEVEL",
        default="INFO",
        parse=_to_level,
        help="Level of Rookery's own log on the console.",
    ),
)

SETTINGS_BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}


def read_settings(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Parse every setting from ``environ``; ``overrides`` (tests, create_app(config)) win."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.env in overrides:
            values[setting.env] = overrides[setting.env]
            continue
        raw = environ.get(setting.env)
        if raw is None or raw == "":
            values[setting.env] = setting.default
            continue
        try:
            values[setting.env] = setting.parse(raw)
        except ValueError as exc:
            shown = "<hidden>" if setting.secret else repr(raw)
            raise ConfigError(f"{setting.env}={shown} is invalid: {exc}.") from None
    if "ROOKERY_WEBHOOK_ALLOW" in overrides:  # the environment's was parsed above
        from app import webhook_guard

        try:
            webhook_guard.allow_list(overrides["ROOKERY_WEBHOOK_ALLOW"])
        except ValueError as exc:
            raise ConfigError(f"ROOKERY_WEBHOOK_ALLOW is invalid: {exc}.") from None
    if values["ROOKERY_JOB_TIMEOUT_SECONDS"] > values["ROOKERY_JOB_TIMEOUT_MAX_SECONDS"]:
        raise ConfigError(
            "ROOKERY_JOB_TIMEOUT_SECONDS may not exceed ROOKERY_JOB_TIMEOUT_MAX_SECONDS "
            f"({values['ROOKERY_JOB_TIMEOUT_SECONDS']} > "
            f"{values['ROOKERY_JOB_TIMEOUT_MAX_SECONDS']})."
        )
    return values


#: what a folder holds once Rookery has used it as its instance
INSTANCE_MARKS = ("secret_key", "encryption.key", "pgdata")


def is_instance(folder: Path) -> bool:
    """Whether ``folder`` is an instance folder Rookery made (its keys, its database)."""
    return folder.is_dir() and any((folder / mark).exists() for mark in INSTANCE_MARKS)


def find_instance(start: Path, *, create: bool) -> Path:
    """The ``instance`` folder of ``start`` or of its nearest parent that holds one made by
    Rookery; with ``create``, ``start/instance`` when there is none (a first start).

    Without ``create`` (any command but the servers), finding none is a ConfigError that
    says what to do: no keys and no 46 MB database appear in a folder by accident.
    """
    start = start.resolve()
    for folder in (start, *start.parents):
        if is_instance(folder / "instance"):
            return folder / "instance"
    if create:
        return start / "instance"
    raise ConfigError(
        f"No Rookery instance found: no instance/ folder made by Rookery in {start} or a "
        "folder above it. Run the command in the folder you start Rookery from (where "
        "run.sh is), or set ROOKERY_INSTANCE to the instance folder."
    )


def prepare_instance(path: str | os.PathLike[str]) -> Path:
    """Create the instance folder (mode 0700) or explain why it cannot be used."""
    folder = Path(path).expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(
            f"Cannot create the instance folder {folder}: {exc.strerror}. "
            "Set ROOKERY_INSTANCE to a writable folder."
        ) from None
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"The instance folder {folder} is not writable. "
            "Set ROOKERY_INSTANCE to a writable folder."
        )
    return folder


def read_or_create_key(path: Path, make: Callable[[], str]) -> str:
    """Return the key kept in ``path``, creating it with mode 0600 on first use.

    O_EXCL makes two processes starting together agree on one key: the loser reads
    the winner's file.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if not value:
            raise ConfigError(f"The key file {path} is empty; restore it from backup.") from None
        return value
    except OSError as exc:
        raise ConfigError(f"Cannot write the key file {path}: {exc.strerror}.") from None
    value = make()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    logger.info("Created %s (mode 0600): back it up with the instance folder", path.name)
    return value


def make_secret_key() -> str:
    """A fresh Flask secret key."""
    return secrets.token_urlsafe(48)


def make_fernet_key() -> str:
    """A fresh Fernet key for secrets at rest."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()
