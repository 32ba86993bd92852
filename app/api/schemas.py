"""The API's request and response shapes, as pydantic models.

They validate what comes in (unknown fields and wrong types are refused with a 422 that
names each field), describe what goes out, and are the OpenAPI document's schemas.
Requests are strict (``"5"`` is not a number, ``1`` is not ``true``); query strings
are text, so their models convert. Ids are PostgreSQL integers; text never holds NUL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from app.errors import MAX_ID
from app.models import MAX_PARALLEL

MAX_INT = MAX_ID  # what any integer column holds: ids, and the seconds fields below
MAX_BIGINT = 9_223_372_036_854_775_807

Id = Annotated[int, Field(ge=1, le=MAX_INT)]
BigId = Annotated[int, Field(ge=1, le=MAX_BIGINT)]
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00]*$")]
ShortText = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00]*$")]
TagName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]


def _sane_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a time zone (e.g. 2026-12-01T10:00:00Z)")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None
    if not 1970 <= utc.year <= 9000:
        raise ValueError("out of range (years 1970 to 9000)")
    return utc


#: a date and time with its time zone, within sane years
Timestamp = Annotated[datetime, Field(strict=False), AfterValidator(_sane_time)]
Priority = Literal["low", "normal", "high", "critical"] | Annotated[int, Field(ge=0, le=100)]


class Request(BaseModel):
    """A request body: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Query(BaseModel):
    """A query string: values are text and convert; an unknown parameter is a 422 naming it
    (a misspelt filter must not answer everything)."""

    model_config = ConfigDict(extra="forbid")


#: most items one page of a list holds (logs, events and a run's results: PAGE_MAX_LONG)
PAGE_MAX = 500
PAGE_MAX_LONG = 1000
PAGE_DEFAULT = 100
#: a cursor as the API gives them out (``next``): opaque text
Cursor = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00]*$")]


class Page(Query):
    """A page of a list: ``limit`` items after ``cursor`` (the ``next`` of the page before)."""

    #: how many items, at most 500 (logs, events and a run's results: 1000)
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT
    #: the ``next`` of the previous page, unchanged; absent: the first page
    cursor: Cursor | None = None


class LongPage(Page):
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX_LONG)] = PAGE_DEFAULT


class PageOut(BaseModel):
    """A page of a list: its items and ``next``, the cursor of the next page."""

    #: pass it as ``cursor`` for the next page; null: this is the last page
    next: str | None


class Error(BaseModel):
    """Every error: a title, a message a person can read, and per-field details."""

    error: str
    message: str
    fields: dict[str, str] | None = None


# ------------------------------------------------------------------------ job types


class ParamSpecOut(BaseModel):
    name: str
    type: str
    label: str
    help: str
    default: Any = None
    required: bool
    choices: list[str]
    secret: bool


class JobTypeOut(BaseModel):
    job_type: str
    label: str
    description: str
    icon: str
    default_schedule: dict[str, Any] | None
    params: list[ParamSpecOut]
    targets: str
    needs_credentials: bool
    source: str


class SkippedOut(BaseModel):
    path: str
    reason: str


class JobTypesOut(BaseModel):
    job_types: list[JobTypeOut]
    skipped: list[SkippedOut]


class MeOut(BaseModel):
    id: int
    username: str
    role: str


# --------------------------------------------------------------------------- schedules


class IntervalSchedule(Request):
    kind: Literal["interval"]
    minutes: Annotated[int, Field(ge=1, le=525_600)]
    enabled: bool = True


class CronSchedule(Request):
    kind: Literal["cron"]
    expression: Annotated[
        str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00]*$")
    ]
    timezone: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]*$")
    ] = "UTC"
    enabled: bool = True


class OnceSchedule(Request):
    kind: Literal["once"]
    at: Timestamp
    enabled: bool = True


ScheduleIn = Annotated[IntervalSchedule | CronSchedule | OnceSchedule, Field(discriminator="kind")]


class ScheduleCreate(Request):
    """A schedule of a saved job."""

    job_id: Id
    schedule: ScheduleIn


class SchedulePatch(Request):
    """New timing (replaces the old one) and/or enabled."""

    schedule: ScheduleIn | None = None
    enabled: bool | None = None


class ScheduleOut(BaseModel):
    id: int
    job_id: int
    job_name: str | None = None
    kind: str
    minutes: int | None
    expression: str | None
    timezone: str
    at: datetime | None
    enabled: bool
    next_fire_at: datetime | None
    last_fire_at: datetime | None
    description: str
    created_at: datetime | None


class ScheduleList(PageOut):
    items: list[ScheduleOut]


class ScheduleQuery(Page):
    job_id: Id | None = None


# -------------------------------------------------------------------------------- jobs


class Targets(Request):
    tags: list[TagName] = Field(default_factory=list, max_length=500)
    #: device names, or ids
    devices: list[Name | Id] = Field(default_factory=list, max_length=10_000)


class JobFields(Request):
    """What a job holds besides its name and type (every field optional)."""

    params: dict[str, Any] | None = None
    targets: Targets | None = None
    priority: Priority | None = None
    max_retries: Annotated[int, Field(ge=0, le=20)] | None = None
    retry_backoff_seconds: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    retry_backoff_max_seconds: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    timeout_seconds: Annotated[int, Field(ge=1, le=MAX_INT)] | None = None
    max_parallel: Annotated[int, Field(ge=1, le=MAX_PARALLEL)] | None = None
    credentials: list[Name] | None = Field(default=None, max_length=100)
    description: (
        Annotated[str, StringConstraints(max_length=10_000, pattern=r"^[^\x00]*$")] | None
    ) = None
    labels: list[Annotated[str, StringConstraints(max_length=64, pattern=r"^[^\x00]*$")]] | None = (
        Field(default=None, max_length=100)
    )
    depends_on: list[Id] | None = Field(default=None, max_length=100)
    allow_overlap: bool | None = None
    enabled: bool | None = None
    schedule: ScheduleIn | None = None


class JobCreate(JobFields):
    name: Name
    job_type: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]


class JobPatch(JobFields):
    """Fields not given keep their values; ``schedule: null`` removes the job's schedules."""

    name: Name | None = None


class TargetsOut(BaseModel):
    tags: list[str]
    devices: list[int]


class JobOut(BaseModel):
    id: int
    name: str
    job_type: str
    description: str
    labels: list[str]
    params: dict[str, Any]
    targets: TargetsOut
    priority: int
    priority_name: str | None
    max_retries: int | None
    retry_backoff_seconds: int | None
    retry_backoff_max_seconds: int | None
    timeout_seconds: int | None
    max_parallel: int | None
    credentials: list[str]
    depends_on: list[int]
    allow_overlap: bool
    enabled: bool
    schedules: list[ScheduleOut]
    created_at: datetime | None
    updated_at: datetime | None


class JobList(PageOut):
    items: list[JobOut]


class JobQuery(Page):
    label: ShortText | None = None
    job_type: ShortText | None = None
    search: ShortText | None = None


# -------------------------------------------------------------------------------- runs


class RunStart(Request):
    """Start a run: now in the queue, later, after other runs, or here and now."""

    #: restrict the run to these devices (names or ids)
    devices: list[Name | Id] | None = Field(default=None, max_length=10_000)
    schedule_at: Timestamp | None = None
    depends_on_runs: list[Id] | None = Field(default=None, max_length=100)
    #: execute in this request through run_now and answer with the result
    now: bool = False


class RunStartQuery(Query):
    #: wait up to this many seconds for the run to end before answering
    wait: Annotated[float, Field(ge=0, le=3600)] | None = None


class Progress(BaseModel):
    done: int
    total: int


class DeviceResultRow(BaseModel):
    """A device's result in a run, without its output (``output_url`` has it)."""

    id: int
    device: str
    device_id: int | None
    #: success, failed, skipped, no_credentials, auth_failed, unreachable, timeout,
    #: cancelled, host_key_changed, host_key_unapproved
    status: str
    message: str
    credential: str | None
    #: a backup: whether the config changed; null for other jobs
    changed: bool | None
    #: a backup: the config store commit holding this device's config
    commit: str | None
    connect_attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    #: the output's size in bytes (null: no output)
    output_bytes: int | None
    #: this result whole, with its output and data
    output_url: str


class DeviceResultOut(DeviceResultRow):
    """A device's result in a run with its output and the job's data."""

    data: dict[str, Any] | None
    output: str | None


class DeviceResultList(PageOut):
    items: list[DeviceResultRow]


class ResultQuery(LongPage):
    #: only these statuses; ``any_failure``: every status but success
    status: list[Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]] | None = None
    #: only devices whose name contains this (any case)
    device: ShortText | None = None


class ResultSummary(BaseModel):
    """How many devices of the run have a result, by status."""

    total: int
    by_status: dict[str, int]
    #: backups whose config changed
    changed: int


class RunOut(BaseModel):
    id: int
    job_id: int | None
    job_name: str
    job_type: str
    status: str
    final: bool
    attempt: int
    max_attempts: int
    priority: int
    progress: Progress
    message: str | None
    result: Any = None
    error: str | None
    device_ids: list[int] | None
    depends_on_runs: list[int]
    relaunch_of: int | None
    triggered_by: str
    signal_id: str
    worker: str | None
    cancel_requested: bool
    created_at: datetime | None
    queued_at: datetime | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None


class RunDetail(RunOut):
    summary: ResultSummary
    #: the per-device results, a page at a time (GET /runs/{run_id}/results)
    results_url: str
    #: what run_now returned, for ``"now": true``
    outcome: str | None = None


class RunList(PageOut):
    items: list[RunOut]


class RunQuery(Page):
    #: statuses, or ``any_failure``
    status: list[ShortText] | None = None
    job_type: ShortText | None = None
    job_id: Id | None = None
    #: a device's name: runs with a result for it
    device: ShortText | None = None
    #: user, api, cli, schedule, relaunch, dependency, run_now
    trigger: ShortText | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    #: older than this run id (``cursor`` does the same)
    before: Id | None = None
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX)] = 50


class Relaunch(Request):
    failed_only: bool = False


class EventOut(BaseModel):
    id: int
    type: str
    status: str | None
    message: str
    run_id: int | None
    job_id: int | None
    actor: str | None
    result: Any = None
    exception: str | None
    data: Any = None
    pre_data: Any = None
    post_data: Any = None
    signal_id: str | None
    created_at: datetime


class EventList(PageOut):
    items: list[EventOut]


class EventQuery(LongPage):
    type: list[ShortText] | None = None
    #: newer than this event id (``cursor`` continues from a page)
    after: BigId | None = None


# -------------------------------------------------------------------------------- logs


class LogOut(BaseModel):
    id: int
    at: datetime
    log_type: str
    source: str
    level: str
    message: str
    job_id: int | None
    job_type: str | None
    run_id: int | None
    device_id: int | None
    meta: Any = None


class LogList(PageOut):
    items: list[LogOut]


class LogQuery(LongPage):
    run_id: Id | None = None
    job_id: Id | None = None
    device_id: Id | None = None
    log_type: ShortText | None = None
    source: ShortText | None = None
    level: Literal["debug", "info", "warning", "warn", "error", "critical"] | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    #: older than this id, newest first (``cursor`` continues from a page)
    before: BigId | None = None
    #: newer than this id, oldest first, as a follower reads (``cursor`` continues)
    after: BigId | None = None


# ----------------------------------------------------------------------------- devices


class DeviceCreate(Request):
    name: Name
    host: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    platform: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]
    driver: Annotated[str, StringConstraints(max_length=32, pattern=r"^[^\x00]*$")] = "netmiko"
    enabled: bool = True
    notes: Annotated[str, StringConstraints(max_length=10_000, pattern=r"^[^\x00]*$")] = ""
    tags: list[TagName] = Field(default_factory=list, max_length=500)


class DevicePatch(Request):
    name: Name | None = None
    host: (
        Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]
        | None
    ) = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    platform: (
        Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]*$")] | None
    ) = None
    driver: Annotated[str, StringConstraints(max_length=32, pattern=r"^[^\x00]*$")] | None = None
    enabled: bool | None = None
    notes: Annotated[str, StringConstraints(max_length=10_000, pattern=r"^[^\x00]*$")] | None = None
    tags: list[TagName] | None = Field(default=None, max_length=500)


class CredentialHoldOut(BaseModel):
    """Why no credential is sent to the device until an admin approves it."""

    reason: str
    since: datetime | None
    by: str | None


class HostKeyOut(BaseModel):
    #: ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa ...
    type: str
    #: OpenSSH's SHA256:... fingerprint (``ssh-keygen -lf``)
    fingerprint: str
    seen_at: datetime | None
    #: ``<type> <base64>``
    public_key: str


class PinnedHostKeyOut(HostKeyOut):
    #: learned (trust on first use), accepted or set (by an admin)
    source: str
    #: accepted or set by an admin: the keys ``ROOKERY_SSH_HOST_KEYS=strict`` trusts
    approved: bool


class LastBackupOut(BaseModel):
    """The device's latest config backup: when, how it ended, the commit holding its
    config, and its latest success."""

    at: datetime | None
    status: str
    commit: str | None
    last_success_at: datetime | None
    run_id: int | None


class DeviceOut(BaseModel):
    id: int
    name: str
    host: str
    port: int
    platform: str
    driver: str
    enabled: bool
    notes: str
    tags: list[str]
    credential_hold: CredentialHoldOut | None = None
    last_backup: LastBackupOut | None = None
    created_at: datetime | None
    updated_at: datetime | None
    #: the pinned SSH host key; a server presenting another one is refused
    host_key: PinnedHostKeyOut | None
    #: the last key a refused server offered, for an admin to accept
    host_key_pending: HostKeyOut | None


class HostKeyAccept(Request):
    #: the pending key's fingerprint as the admin saw it: refused (409) if it changed since
    fingerprint: (
        Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00]*$")]
        | None
    ) = None


class HostKeySet(Request):
    #: an OpenSSH public key, ``<type> <base64> [comment]`` (an ``ssh-keyscan`` line too)
    key: Annotated[str, StringConstraints(min_length=1, max_length=16_384, pattern=r"^[^\x00]*$")]


class DeviceList(PageOut):
    items: list[DeviceOut]


class DeviceQuery(Page):
    tag: ShortText | None = None
    search: ShortText | None = None
    enabled: bool | None = None
    platform: ShortText | None = None
    #: true: only devices whose credentials are on hold; false: only the others
    held: bool | None = None
    #: stale (no successful backup within stale_hours), failing (the latest backup
    #: failed), never (no backup yet), fresh (a success within stale_hours)
    backup: Literal["stale", "failing", "never", "fresh"] | None = None
    stale_hours: Annotated[int, Field(ge=1, le=24 * 365)] = 24
    #: name, or last successful backup (never first; "-last_backup": newest first)
    sort: Literal["name", "last_backup", "-last_backup"] = "name"


class ConfigVersion(BaseModel):
    commit: str
    created_at: datetime
    run_id: int | None
    message: str
    author: str


class ConfigVersionList(PageOut):
    items: list[ConfigVersion]


class DiffQuery(Query):
    from_: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(alias="from")
    to: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "HEAD"


class ImportIn(Request):
    """A CSV file (``csv``) or a Nornir SimpleInventory (``hosts``, ``groups``, ``defaults``)."""

    format: Literal["csv", "nornir"]
    csv: Annotated[str, StringConstraints(max_length=20_000_000, pattern=r"^[^\x00]*$")] | None = (
        None
    )
    hosts: (
        Annotated[str, StringConstraints(max_length=20_000_000, pattern=r"^[^\x00]*$")] | None
    ) = None
    groups: (
        Annotated[str, StringConstraints(max_length=5_000_000, pattern=r"^[^\x00]*$")] | None
    ) = None
    defaults: (
        Annotated[str, StringConstraints(max_length=5_000_000, pattern=r"^[^\x00]*$")] | None
    ) = None
    #: import the good rows even when some are bad
    partial: bool = False


class RowErrorOut(BaseModel):
    line: int
    name: str | None
    message: str


class ImportOut(BaseModel):
    created: int
    updated: int
    unchanged: int
    errors: list[RowErrorOut]


class ImportFailed(Error):
    """Nothing was imported: every bad row, by line."""

    errors: list[RowErrorOut] | None = None


class ExportQuery(Query):
    format: Literal["csv", "nornir"] = "csv"


class ExportOut(BaseModel):
    format: str
    #: file name -> content
    files: dict[str, str]


# -------------------------------------------------------------------------------- tags


class TagOut(BaseModel):
    id: int
    name: str
    description: str
    device_count: int


class TagList(PageOut):
    items: list[TagOut]


class TagPatch(Request):
    name: TagName | None = None
    description: (
        Annotated[str, StringConstraints(max_length=10_000, pattern=r"^[^\x00]*$")] | None
    ) = None


class TagDeleteQuery(Query):
    force: bool = False


# ------------------------------------------------------------------------- credentials

Secret = Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^\x00]*$")]


class CredentialCreate(Request):
    name: Name
    username: Name
    password: Annotated[
        str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00]*$")
    ]
    #: the enable secret
    secret: Secret | None = None
    priority: Annotated[int, Field(ge=0, le=1000)] = 100
    tags: list[TagName] = Field(default_factory=list, max_length=500)


class CredentialPatch(Request):
    """None (or absent) keeps a field; an empty password keeps it; an empty secret clears it."""

    name: Name | None = None
    username: Name | None = None
    password: Secret | None = None
    secret: Secret | None = None
    priority: Annotated[int, Field(ge=0, le=1000)] | None = None
    tags: list[TagName] | None = Field(default=None, max_length=500)


class CredentialOut(BaseModel):
    id: int
    name: str
    username: str
    priority: int
    tags: list[str]
    has_enable_secret: bool
    success_count: int
    failure_count: int
    last_used_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


class CredentialList(PageOut):
    items: list[CredentialOut]


class CredentialQuery(Page):
    tag: ShortText | None = None


# --------------------------------------------------------------------------- webhooks


#: what a webhook can be told about (app/services/webhooks.EVENTS)
WebhookEvent = Literal[
    "failure", "timeout", "config_changed", "compliance_changed", "rollback_failed"
]


class WebhookCreate(Request):
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^[^\x00]*$")]
    events: list[WebhookEvent] = Field(min_length=1, max_length=5)
    #: the HMAC key; leave it out to have one generated (shown once, in this answer)
    secret: (
        Annotated[str, StringConstraints(min_length=16, max_length=256, pattern=r"^[^\x00]*$")]
        | None
    ) = None
    enabled: bool = True


class WebhookPatch(Request):
    url: (
        Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^[^\x00]*$")]
        | None
    ) = None
    events: list[WebhookEvent] | None = Field(default=None, min_length=1, max_length=5)
    enabled: bool | None = None


class WebhookOut(BaseModel):
    id: int
    job_id: int
    url: str
    events: list[str]
    enabled: bool
    created_at: datetime | None


class WebhookCreated(WebhookOut):
    #: the generated secret, shown this once (absent when you chose it)
    secret: str | None = None


class SecretRotate(Request):
    #: the new HMAC key; leave it out to have one generated (shown once, in the answer)
    secret: (
        Annotated[str, StringConstraints(min_length=16, max_length=256, pattern=r"^[^\x00]*$")]
        | None
    ) = None


class SecretOut(BaseModel):
    #: the generated secret (null when you chose it)
    secret: str | None


class WebhookList(PageOut):
    items: list[WebhookOut]


# ---------------------------------------------------------------- statistics and audit


class StatsQuery(Query):
    since: Timestamp | None = None
    until: Timestamp | None = None
    days: Annotated[int, Field(ge=1, le=366)] = 14


class StatsOut(BaseModel):
    since: str
    until: str | None
    now: str
    runs: dict[str, Any]
    durations: dict[str, Any]
    now_running: int
    now_queued: int
    now_scheduled: int
    now_waiting: int
    oldest_queued_run: dict[str, Any] | None
    queue: dict[str, Any]
    workers: dict[str, Any]
    runs_per_day: list[dict[str, Any]]
    failing_devices: list[dict[str, Any]]


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str | None
    summary: str
    before: Any = None
    after: Any = None
    address: str | None


class AuditList(PageOut):
    items: list[AuditOut]


class AuditQuery(Page):
    object_type: ShortText | None = None
    actor: ShortText | None = None
    action: ShortText | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    #: older than this entry id (``cursor`` does the same)
    before: BigId | None = None


class StreamQuery(Query):
    """What a run's event stream sends (GET /runs/{run_id}/stream)."""

    #: which kinds of message: status, log, event, result (default: all)
    kinds: list[Literal["status", "log", "event", "result"]] | None = None
    #: only these event types (job.started, job.failed, ...); default: every type
    event_types: list[ShortText] | None = None
    #: only log lines at this level or above
    level: Literal["debug", "info", "warning", "error", "critical"] | None = None
    #: resume after this cursor (the ``id:`` of the last message seen); the
    #: Last-Event-ID header does the same. Default: from the run's beginning.
    last_event_id: ShortText | None = None


# ------------------------------------------------------------------ command rules


class CommandRuleCreate(Request):
    kind: Literal["allow", "deny"]
    #: the first words of the commands, e.g. "show tech-support"
    words: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    #: a netmiko device type; null or absent: every platform
    platform: Annotated[str, StringConstraints(max_length=64)] | None = None
    note: Annotated[str, StringConstraints(max_length=500)] = ""


class CommandRuleOut(BaseModel):
    id: int
    kind: str
    words: str
    platform: str | None
    note: str
    created_by: str
    created_at: datetime | None


class BuiltinPolicyOut(BaseModel):
    platform: str
    verbs: list[str]
    filters: list[str]


class CommandPolicyOut(BaseModel):
    builtin: list[BuiltinPolicyOut]
    rules: list[CommandRuleOut]


# ------------------------------------------------------------------- config search


class ConfigSearchQuery(Query):
    q: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00]*$")]
    #: the pattern is a regular expression (else plain text)
    regex: bool = False
    #: case-sensitive (else not)
    case: bool = False
    #: lines shown before and after each match
    context: Annotated[int, Field(ge=0, le=10)] = 2
    tag: ShortText | None = None
    platform: ShortText | None = None


class SearchDeviceOut(BaseModel):
    id: int
    name: str


class SearchMatchOut(BaseModel):
    line_number: int
    line: str
    before: list[str]
    after: list[str]


class SearchItemOut(BaseModel):
    device: SearchDeviceOut
    #: the config store commit holding the searched text
    commit: str
    matches: list[SearchMatchOut]
    #: more matching lines than shown
    more: bool


class ConfigSearchOut(BaseModel):
    items: list[SearchItemOut]
    #: more devices matched than shown (500)
    truncated: bool
    #: devices whose latest config was searched
    searched: int


# ------------------------------------------------------------------- compliance

Severity = Literal["low", "medium", "high", "critical"]
RuleText = Annotated[str, StringConstraints(max_length=100_000, pattern=r"^[^\x00]*$")]


class ComplianceRuleCreate(Request):
    name: Name
    description: Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")] = ""
    severity: Severity = "medium"
    #: netmiko device types; empty: every platform
    platforms: list[TagName] = []
    #: tags; empty: every device, else a device needs one of them
    tags: list[TagName] = []
    #: lines that must be present, indented as on the device; ``re:`` marks a pattern
    required: RuleText = ""
    #: lines that must be absent, optionally under a parent line; ``re:`` marks a pattern
    forbidden: RuleText = ""


class ComplianceRulePatch(Request):
    name: Name | None = None
    description: (
        Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")] | None
    ) = None
    severity: Severity | None = None
    platforms: list[TagName] | None = None
    tags: list[TagName] | None = None
    required: RuleText | None = None
    forbidden: RuleText | None = None


class ComplianceRuleOut(BaseModel):
    id: int
    name: str
    description: str
    severity: str
    platforms: list[str]
    tags: list[str]
    required: str
    forbidden: str
    #: the Python rule module this rule comes from (read-only here), or null
    module: str | None
    #: why a module rule is not checked now
    skipped_reason: str | None
    version: int
    updated_at: datetime | None
    updated_by: str


class ComplianceRuleList(PageOut):
    items: list[ComplianceRuleOut]


class ComplianceQuery(Page):
    tag: ShortText | None = None
    platform: ShortText | None = None
    severity: Severity | None = None


class RuleRef(BaseModel):
    id: int
    name: str


class ComplianceRuleSummary(BaseModel):
    rule: RuleRef
    severity: str
    #: devices complying
    compliant: int
    #: devices failing
    failing: int
    #: devices the rule could not be checked on (a module that raised)
    errors: int
    #: devices with a backed-up config and no result: out of the rule's scope, or waiting
    #: for a check
    not_checked_or_out_of_scope: int


class ComplianceSummaryOut(PageOut):
    items: list[ComplianceRuleSummary]


class DeviceComplianceItem(BaseModel):
    rule: RuleRef
    severity: str
    compliant: bool
    missing: list[str]
    unexpected: list[str]
    #: the commands that would make the device compliant (secrets redacted)
    remediation: str
    error: str | None
    #: the commit of the config this result was computed on
    commit: str
    checked_at: datetime


class DeviceComplianceOut(BaseModel):
    #: the device's latest backed-up config, or null (never backed up)
    commit: str | None
    checked_at: datetime | None
    items: list[DeviceComplianceItem]


# ---------------------------------------------------------------------- changes


class ChangeCheck(Request):
    #: a read-only command run before and after the change
    command: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    #: a regular expression its output must show (or, with absent, must not)
    expect: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    absent: bool = False
    #: before the push (a pre-check), after it (a post-check), or both
    when: Literal["both", "before", "after"] = "both"


class ChangeTargets(Request):
    tags: list[TagName] = []
    #: device names or ids
    devices: list[Annotated[str, StringConstraints(min_length=1, max_length=128)] | Id] = []


class ChangeCreate(Request):
    name: Name
    description: Annotated[str, StringConstraints(max_length=4000, pattern=r"^[^\x00]*$")] = ""
    targets: ChangeTargets
    #: Jinja2: device.name, device.host, device.platform, device.tags and the variables
    template: Annotated[str, StringConstraints(min_length=1, max_length=100_000)]
    variables: dict[str, Any] = {}
    #: names of variables whose values are secrets (SNMP communities, keys): stored
    #: encrypted, shown as ***, hidden in previews, messages and logs
    secret_variables: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = []
    checks: list[ChangeCheck] = []
    #: the first wave's size
    canary: Annotated[int, Field(ge=0, le=10_000)] = 1
    wave_size: Annotated[int, Field(ge=1, le=10_000)] = 10
    pause_seconds: Annotated[int, Field(ge=0, le=86_400)] = 0
    #: stop the rollout after this many failed devices
    max_failed: Annotated[int, Field(ge=1, le=10_000)] = 1
    rollback: Literal["device", "all"] = "device"
    #: after the push, a new login to the device must work (else it is rolled back)
    reachability: bool = False


class ChangePatch(Request):
    name: Name | None = None
    description: (
        Annotated[str, StringConstraints(max_length=4000, pattern=r"^[^\x00]*$")] | None
    ) = None
    targets: ChangeTargets | None = None
    template: Annotated[str, StringConstraints(min_length=1, max_length=100_000)] | None = None
    #: a secret variable given as *** keeps its stored value
    variables: dict[str, Any] | None = None
    secret_variables: (
        list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] | None
    ) = None
    checks: list[ChangeCheck] | None = None
    canary: Annotated[int, Field(ge=0, le=10_000)] | None = None
    wave_size: Annotated[int, Field(ge=1, le=10_000)] | None = None
    pause_seconds: Annotated[int, Field(ge=0, le=86_400)] | None = None
    max_failed: Annotated[int, Field(ge=1, le=10_000)] | None = None
    rollback: Literal["device", "all"] | None = None
    reachability: bool | None = None


class ChangeReview(Request):
    note: Annotated[str, StringConstraints(max_length=4000, pattern=r"^[^\x00]*$")] = ""


class DeviceRef(BaseModel):
    id: int
    name: str


class ChangeTargetsOut(BaseModel):
    tags: list[str]
    devices: list[DeviceRef]


class ChangeDeviceOut(BaseModel):
    device: dict[str, Any]
    #: 0 is the canary
    wave: int
    #: pending, pushing, applied, rolled_back, rollback_failed, failed_precheck,
    #: not_attempted
    state: str
    message: str
    commands: str
    rollback_method: str | None
    #: the config store's commits of the config before and after (or after the rollback)
    before_commit: str | None
    after_commit: str | None
    checks: dict[str, Any]
    updated_at: datetime | None


class ChangeOut(BaseModel):
    id: int
    name: str
    description: str
    #: draft, awaiting_approval, approved, rejected; once applied: applying, applied,
    #: partially_applied, rolled_back, failed (the latest apply's)
    status: str
    #: draft, awaiting_approval, approved, rejected
    review_status: str
    #: the latest apply's run
    run_id: int | None
    #: the job whose runs apply it (made when it is first submitted; its webhooks hear
    #: of its rollouts, e.g. rollback_failed)
    job_id: int | None
    #: bumped by every edit of what the change does; an approval is for one version
    version: int
    targets: ChangeTargetsOut
    template: str
    #: the secret ones as ***
    variables: dict[str, Any]
    secret_variables: list[str]
    checks: list[dict[str, Any]]
    canary: int
    wave_size: int
    pause_seconds: int
    max_failed: int
    rollback: str
    reachability: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    review_note: str
    #: the latest apply's devices (one change's GET only)
    devices: list[ChangeDeviceOut] | None = None


class ChangeApplied(BaseModel):
    run_id: int


class ChangeList(PageOut):
    items: list[ChangeOut]


class ChangePreviewItem(BaseModel):
    device: DeviceRef
    #: the rendered commands (null: the template did not render for this device)
    commands: str | None
    #: what really changes in the device's config (empty: nothing; null: no backup yet)
    effective: str | None
    #: +/- lines under their sections, current config -> predicted
    diff: str | None
    problem: str | None
    #: the commit of the backed-up config the prediction starts from
    commit: str | None


class ChangePreviewOut(BaseModel):
    items: list[ChangePreviewItem]
    devices: int
    problems: int
    unchanged: int


class ChangeLivePreviewOut(ChangePreviewOut):
    #: the latest live preview's run (null: none yet) and its status
    run_id: int | None
    status: str | None
    #: the run ended: every device is in ``items`` (a device it could not reach with
    #: its reason in ``problem``)
    final: bool
