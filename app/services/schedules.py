"""Schedules: when a job runs by itself — every N minutes, by a cron expression, or once.

A schedule is a row. ``next_fire_at`` (UTC) is what the scheduler's tick compares with
the clock, so it is computed here whenever a schedule is created, changed or enabled,
and by the tick whenever it fires. The time arithmetic is pure (``next_fire_after``):

- interval: a fixed grid of slots anchored at the schedule's creation minute, so fires
  land on the same slots however late a tick ran;
- cron: croniter, evaluated in the time zone the schedule names. Across DST, a time
  skipped by spring-forward fires when the clock jumps past it; a time repeated by
  fall-back fires once, unless the expression is a wildcard one (``*`` or ``*/n`` in the
  minute or hour field), which keeps firing by real time — the rule of Vixie cron;
- once: its ``run_at``, if that is still ahead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from sqlalchemy import Select, select
from sqlalchemy.orm import contains_eager

from app import audit, registry
from app.errors import ValidationError
from app.extensions import db
from app.models import Job, Schedule, ScheduleFire, User, utcnow
from app.services import get_row

logger = logging.getLogger(__name__)

KINDS = registry.SCHEDULE_KINDS
#: a year; anything rarer is a cron expression (or a one-time schedule)
MAX_INTERVAL_MINUTES = 365 * 24 * 60
CRON_FIELDS = "minute hour day-of-month month day-of-week"
#: candidates croniter may offer before we decide an expression never fires
_MAX_CRON_CANDIDATES = 1000
_FIELD_LABELS = {
    "kind": "Kind",
    "interval_minutes": "Interval",
    "cron": "Cron expression",
    "timezone": "Time zone",
    "run_at": "Run at",
}
_TIMING_FIELDS = ("kind", "interval_minutes", "cron", "timezone", "run_at")


class ScheduleLike(Protocol):
    """What ``next_fire_after`` reads: a Schedule, saved or not, or any look-alike."""

    @property
    def kind(self) -> str: ...
    @property
    def interval_minutes(self) -> int | None: ...
    @property
    def cron(self) -> str | None: ...
    @property
    def timezone(self) -> str: ...
    @property
    def run_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime | None: ...


@dataclass(frozen=True, kw_only=True)
class ScheduleSpec:
    """Validated timing of a schedule; only the fields of its kind are set."""

    kind: str
    interval_minutes: int | None
    cron: str | None
    timezone: str
    run_at: datetime | None


# ------------------------------------------------------------------------ time arithmetic


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value!r} has no time zone; schedules compute in aware UTC")
    return value.astimezone(UTC)


def next_fire_after(
    schedule: ScheduleLike, after: datetime, *, anchor: datetime | None = None
) -> datetime | None:
    """The first fire time of ``schedule`` strictly after ``after`` (aware), in UTC.

    None when it never fires again (a one-time schedule whose time has passed, a cron
    expression that matches no date). ``anchor`` overrides an interval's grid origin
    (default: the schedule's creation, else ``after``), truncated to the minute.
    """
    after = _utc(after)
    if schedule.kind == "interval":
        if not schedule.interval_minutes or schedule.interval_minutes < 1:
            raise ValueError("an interval schedule needs interval_minutes >= 1")
        origin = anchor or schedule.created_at or after
        return _next_on_grid(_utc(origin), timedelta(minutes=schedule.interval_minutes), after)
    if schedule.kind == "cron":
        if not schedule.cron:
            raise ValueError("a cron schedule needs a cron expression")
        return _next_cron(schedule.cron, ZoneInfo(schedule.timezone or "UTC"), after)
    if schedule.kind == "once":
        run_at = schedule.run_at
        return _utc(run_at) if run_at is not None and _utc(run_at) > after else None
    raise ValueError(f"unknown schedule kind {schedule.kind!r}")


def upcoming(schedule: ScheduleLike, after: datetime, count: int = 3) -> list[datetime]:
    """The next ``count`` fire times of ``schedule`` after ``after``, in UTC (fewer when
    it stops firing: a one-time schedule fires once)."""
    found: list[datetime] = []
    when: datetime | None = after
    while when is not None and len(found) < count:
        when = next_fire_after(schedule, when, anchor=schedule.created_at or after)
        if when is not None:
            found.append(when)
    return found


def _next_on_grid(origin: datetime, step: timedelta, after: datetime) -> datetime:
    origin = origin.replace(second=0, microsecond=0)
    if origin > after:
        return origin
    return origin + ((after - origin) // step + 1) * step


def _next_cron(expression: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    wildcard = _is_wildcard(expression)
    candidates = croniter(expression, after.astimezone(zone))
    for _ in range(_MAX_CRON_CANDIDATES):
        try:
            candidate = _utc(candidates.get_next(datetime))
        except CroniterBadDateError:  # e.g. "0 0 30 2 *": no such date
            return None
        if candidate <= after:
            continue
        if not wildcard and _repeated_wall_time(candidate.astimezone(zone)):
            continue  # fall-back: this wall time already fired an hour ago
        return candidate
    return None


def _is_wildcard(expression: str) -> bool:
    minute, hour, *_ = expression.split()
    return minute.startswith("*") or hour.startswith("*")


def _repeated_wall_time(local: datetime) -> bool:
    """Whether ``local`` is the second occurrence of a wall time (DST fall-back)."""
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


# ----------------------------------------------------------------------------- validation


def zone(name: str) -> ZoneInfo:
    """The named IANA time zone; ValidationError if there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"Unknown time zone {name!r}.", fields={"timezone": f"Unknown time zone {name!r}."}
        ) from None


def validate(
    kind: str | None,
    interval_minutes: int | str | None,
    cron: str | None,
    timezone: str | None,
    run_at: datetime | str | None,
    now: datetime,
    *,
    allow_past: bool = False,
) -> ScheduleSpec:
    """Check a schedule's timing; every problem goes into ValidationError.fields.

    A naive or textual ``run_at`` is read in the schedule's time zone. ``allow_past``
    accepts a one-time schedule whose time has passed (one that stays disabled).
    """
    errors: dict[str, str] = {}
    kind = (kind or "").strip().lower()
    if kind not in KINDS:
        errors["kind"] = "Choose interval, cron or once."
    tz_name = (timezone or "").strip() or "UTC"
    tz: ZoneInfo | None
    try:
        tz = zone(tz_name)
    except ValidationError as exc:
        errors.update(exc.fields)
        tz = None
    minutes = expression = when = None
    if kind == "interval":
        minutes = _check_minutes(interval_minutes, errors)
    elif kind == "cron":
        expression = _check_cron(cron, tz or ZoneInfo("UTC"), now, errors)
    elif kind == "once":
        when = _check_run_at(run_at, tz or ZoneInfo("UTC"), now, errors, allow_past=allow_past)
    if errors:
        raise ValidationError(
            " ".join(f"{_FIELD_LABELS.get(k, k)}: {v}" for k, v in errors.items()), fields=errors
        )
    return ScheduleSpec(
        kind=kind, interval_minutes=minutes, cron=expression, timezone=tz_name, run_at=when
    )


def _check_minutes(value: int | str | None, errors: dict[str, str]) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        errors["interval_minutes"] = "Give a number of minutes."
        return None
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        minutes = int(value)
    except (TypeError, ValueError):
        errors["interval_minutes"] = "A whole number of minutes."
        return None
    if minutes < 1:
        errors["interval_minutes"] = "At least 1 minute."
    elif minutes > MAX_INTERVAL_MINUTES:
        errors["interval_minutes"] = (
            f"At most {MAX_INTERVAL_MINUTES} minutes (a year); use a cron expression."
        )
    return minutes


def _check_cron(value: str | None, tz: ZoneInfo, now: datetime, errors: dict[str, str]) -> str:
    expression = " ".join(str(value or "").split())
    fields = expression.split()
    if not expression:
        errors["cron"] = f"Give a cron expression ({CRON_FIELDS})."
    elif len(fields) != 5:
        errors["cron"] = (
            f"Not a valid cron expression: five fields ({CRON_FIELDS}) are needed, "
            f"not {len(fields)}."
        )
    elif len(expression) > 128:
        errors["cron"] = "Not a valid cron expression: at most 128 characters."
    else:
        try:
            croniter(expression, now)
            upcoming = _next_cron(expression, tz, _utc(now))
        except CroniterError:
            errors["cron"] = f"Not a valid cron expression: {_cron_problem(fields)}"
        else:
            if upcoming is None:
                errors["cron"] = "This cron expression never fires (no such date)."
    return expression


#: each cron field's name and what it takes, in order
_CRON_FIELD_RULES = (
    ("minute", "0 to 59"),
    ("hour", "0 to 23"),
    ("day of month", "1 to 31"),
    ("month", "1 to 12 or jan to dec"),
    ("day of week", "0 to 7 or sun to sat (0 and 7 are Sunday)"),
)


def _cron_problem(fields: list[str]) -> str:
    """Which of five cron fields croniter refuses, in words ("minute must be 0 to 59 ...,
    not '61'"); each field is tried alone, the others being ``*``."""
    for index, (name, allowed) in enumerate(_CRON_FIELD_RULES):
        alone = " ".join(field if i == index else "*" for i, field in enumerate(fields))
        try:
            croniter(alone)
        except CroniterError:
            return (
                f"the {name} must be {allowed} (lists, ranges, steps and * allowed), "
                f"not {fields[index]!r}."
            )
    return "these fields never match together."


def _check_run_at(
    value: datetime | str | None,
    tz: ZoneInfo,
    now: datetime,
    errors: dict[str, str],
    *,
    allow_past: bool,
) -> datetime | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        errors["run_at"] = "Give a date and time."
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            errors["run_at"] = f"Not a date and time: {value.strip()!r} (e.g. 2026-12-01 10:00)."
            return None
    if not isinstance(value, datetime):
        what = "a date without a time" if isinstance(value, date) else repr(value)
        errors["run_at"] = f"Give a date and time, not {what}."
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    when = _utc(value)
    if when <= _utc(now) and not allow_past:
        errors["run_at"] = "This time is in the past."
    return when


# ------------------------------------------------------------------------------ services


def snapshot(schedule: Schedule) -> dict[str, Any]:
    """What the audit trail records of a schedule."""
    return {
        "job_id": schedule.job_id,
        "kind": schedule.kind,
        "interval_minutes": schedule.interval_minutes,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "run_at": schedule.run_at.isoformat() if schedule.run_at else None,
        "enabled": schedule.enabled,
        "next_fire_at": schedule.next_fire_at.isoformat() if schedule.next_fire_at else None,
    }


def get_schedule(schedule_id: int) -> Schedule:
    return get_row(Schedule, schedule_id, "schedule")


def list_schedules(job_id: int | None = None) -> Select[tuple[Schedule]]:
    """Schedules with their job loaded, by job name (only ``job_id``'s when given)."""
    query = (
        select(Schedule)
        .join(Schedule.job)
        .options(contains_eager(Schedule.job))
        .order_by(Job.name, Schedule.id)
    )
    if job_id is not None:
        query = query.where(Schedule.job_id == job_id)
    return query


def list_fires(schedule_id: int) -> Select[tuple[ScheduleFire]]:
    """A schedule's fires, newest first (run_id None: skipped, the scheduler log says why)."""
    return (
        select(ScheduleFire)
        .where(ScheduleFire.schedule_id == schedule_id)
        .order_by(ScheduleFire.fire_at.desc())
    )


def default_schedule_for(job_type: str) -> dict[str, Any] | None:
    """Form values from a job type's ``JOB_META["default_schedule"]``, or None."""
    try:
        raw = registry.current().get(job_type).default_schedule
    except registry.UnknownJobType:
        return None
    if not raw:
        return None
    return {
        "kind": raw["kind"],
        # job modules write {"kind": "interval", "minutes": 60}
        "interval_minutes": raw.get("interval_minutes", raw.get("minutes")),
        "cron": raw.get("cron"),
        "timezone": raw.get("timezone") or "UTC",
        "run_at": raw.get("run_at"),
    }


def describe(schedule: ScheduleLike) -> str:
    """One line for pages: "every 15 minutes", "cron 0 2 * * * (Europe/Berlin)", ..."""
    if schedule.kind == "interval":
        return "every " + _duration(schedule.interval_minutes or 0)
    if schedule.kind == "cron":
        return f"cron {schedule.cron} ({schedule.timezone})"
    if schedule.kind == "once" and schedule.run_at is not None:
        try:
            local = schedule.run_at.astimezone(ZoneInfo(schedule.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            local = schedule.run_at.astimezone(UTC)
        return f"once at {local:%Y-%m-%d %H:%M} ({schedule.timezone})"
    return schedule.kind


def _duration(minutes: int) -> str:
    for unit, size in (("day", 1440), ("hour", 60)):
        if minutes % size == 0:
            count = minutes // size
            return unit if count == 1 else f"{count} {unit}s"
    return "minute" if minutes == 1 else f"{minutes} minutes"


def create_schedule(
    job: Job,
    *,
    kind: str,
    interval_minutes: int | str | None = None,
    cron: str | None = None,
    timezone: str = "UTC",
    run_at: datetime | str | None = None,
    enabled: bool = True,
    actor: User | str | None = None,
) -> Schedule:
    """Validate and save a schedule of ``job`` with its next fire time; commits."""
    now = utcnow()
    spec = validate(kind, interval_minutes, cron, timezone, run_at, now)
    schedule = Schedule(
        job=job,
        kind=spec.kind,
        interval_minutes=spec.interval_minutes,
        cron=spec.cron,
        timezone=spec.timezone,
        run_at=spec.run_at,
        enabled=bool(enabled),
        created_at=now,
    )
    schedule.next_fire_at = next_fire_after(schedule, now) if schedule.enabled else None
    db.session.add(schedule)
    db.session.flush()
    audit.record(
        actor=actor,
        action="create",
        object_type="schedule",
        object_id=schedule.id,
        summary=f"scheduled job {job.name}: {describe(schedule)}",
        after=snapshot(schedule),
    )
    db.session.commit()
    logger.info("Schedule %s of job %s: %s", schedule.id, job.name, describe(schedule))
    return schedule


def update_schedule(
    schedule: Schedule, *, actor: User | str | None = None, **changes: Any
) -> Schedule:
    """Change a schedule's timing and/or ``enabled``; the next fire time follows. Commits.

    ``changes`` takes kind, interval_minutes, cron, timezone, run_at and enabled; fields
    not given keep their values. Slots missed so far are not caught up after a change.
    """
    unknown = sorted(set(changes) - {*_TIMING_FIELDS, "enabled"})
    if unknown:
        raise ValidationError(
            f"Unknown schedule fields: {', '.join(unknown)}.",
            fields={name: "Not a schedule field." for name in unknown},
        )
    current = {name: getattr(schedule, name) for name in _TIMING_FIELDS}
    wanted = {**current, **{k: v for k, v in changes.items() if k in _TIMING_FIELDS}}
    enabled = bool(changes.get("enabled", schedule.enabled))
    now = utcnow()
    spec = validate(
        wanted["kind"],
        wanted["interval_minutes"],
        wanted["cron"],
        wanted["timezone"],
        wanted["run_at"],
        now,
        allow_past=not enabled,
    )
    before = snapshot(schedule)
    timing_changed = any(getattr(spec, name) != current[name] for name in _TIMING_FIELDS)
    enabling = enabled and not schedule.enabled
    for name in _TIMING_FIELDS:
        setattr(schedule, name, getattr(spec, name))
    schedule.enabled = enabled
    if not enabled:
        schedule.next_fire_at = None
    elif timing_changed or enabling or schedule.next_fire_at is None:
        schedule.next_fire_at = next_fire_after(schedule, now)
    after = snapshot(schedule)
    audit.record(
        actor=actor,
        action="update",
        object_type="schedule",
        object_id=schedule.id,
        summary=f"changed schedule #{schedule.id} of job {schedule.job.name}: {describe(schedule)}",
        before=before,
        after=after,
    )
    db.session.commit()
    return schedule


def set_enabled(schedule: Schedule, enabled: bool, *, actor: User | str | None = None) -> Schedule:
    """Enable (from the next slot on: what was missed is not caught up) or disable; commits."""
    before = snapshot(schedule)
    now = utcnow()
    if enabled:
        upcoming = next_fire_after(schedule, now)
        if upcoming is None:
            raise ValidationError(
                "This one-time schedule's time has passed; give it a new time to enable it.",
                fields={"run_at": "This time is in the past."},
            )
        schedule.next_fire_at = upcoming
    else:
        schedule.next_fire_at = None
    schedule.enabled = enabled
    audit.record(
        actor=actor,
        action="enable" if enabled else "disable",
        object_type="schedule",
        object_id=schedule.id,
        summary=f"{'enabled' if enabled else 'disabled'} schedule #{schedule.id} "
        f"of job {schedule.job.name} ({describe(schedule)})",
        before=before,
        after=snapshot(schedule),
    )
    db.session.commit()
    return schedule


def delete_schedule(schedule: Schedule, *, actor: User | str | None = None) -> None:
    """Delete a schedule and its fire records (runs stay); commits."""
    before = snapshot(schedule)
    summary = f"deleted schedule #{schedule.id} of job {schedule.job.name} ({describe(schedule)})"
    audit.record(
        actor=actor,
        action="delete",
        object_type="schedule",
        object_id=schedule.id,
        summary=summary,
        before=before,
    )
    db.session.delete(schedule)
    db.session.commit()
