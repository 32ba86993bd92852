"""Schedule time arithmetic and validation: pure functions, no database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.errors import ValidationError
from app.models import Schedule
from app.services.schedules import describe, next_fire_after, validate

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def interval(minutes: int, created_at: datetime) -> Schedule:
    return Schedule(
        kind="interval", interval_minutes=minutes, timezone="UTC", created_at=created_at
    )


def cron(expression: str, timezone: str = "UTC") -> Schedule:
    return Schedule(kind="cron", cron=expression, timezone=timezone)


def fires(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time in (start, end), by repeatedly asking for the next one."""
    found = []
    moment = next_fire_after(schedule, start)
    while moment is not None and moment < end:
        found.append(moment)
        assert len(found) < 10_000
        moment = next_fire_after(schedule, moment)
    return found


# ------------------------------------------------------------------------------ interval


def test_interval_slots_sit_on_a_grid_anchored_at_the_creation_minute():
    schedule = interval(15, created_at=utc(2026, 1, 10, 10, 3, 27))
    assert next_fire_after(schedule, utc(2026, 1, 10, 10, 3, 27)) == utc(2026, 1, 10, 10, 18)
    assert next_fire_after(schedule, utc(2026, 1, 10, 10, 18)) == utc(2026, 1, 10, 10, 33)
    # a late tick does not shift the grid
    assert next_fire_after(schedule, utc(2026, 1, 10, 10, 19, 59)) == utc(2026, 1, 10, 10, 33)
    assert next_fire_after(schedule, utc(2026, 1, 12, 0, 0)) == utc(2026, 1, 12, 0, 3)


def test_interval_catch_up_lands_on_the_first_slot_after_now():
    schedule = interval(5, created_at=utc(2026, 1, 10, 9, 0))
    assert next_fire_after(schedule, utc(2026, 1, 10, 10, 2)) == utc(2026, 1, 10, 10, 5)


def test_interval_explicit_anchor_and_future_anchor():
    schedule = interval(60, created_at=utc(2026, 1, 10, 9, 17))
    anchor = utc(2026, 1, 10, 9, 30)
    assert next_fire_after(schedule, utc(2026, 1, 10, 11, 0), anchor=anchor) == utc(
        2026, 1, 10, 11, 30
    )
    assert next_fire_after(schedule, utc(2026, 1, 10, 8, 0), anchor=anchor) == anchor


def test_interval_returns_utc_whatever_zone_after_is_in():
    schedule = interval(30, created_at=utc(2026, 1, 10, 0, 0))
    result = next_fire_after(schedule, datetime(2026, 1, 10, 13, 10, tzinfo=BERLIN))
    assert result == utc(2026, 1, 10, 12, 30)
    assert result.tzinfo is UTC


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="no time zone"):
        next_fire_after(interval(5, NOW), datetime(2026, 1, 10, 12, 0))


# ---------------------------------------------------------------------------------- cron


def test_cron_in_utc():
    assert next_fire_after(cron("0 2 * * *"), utc(2026, 1, 10, 3, 0)) == utc(2026, 1, 11, 2, 0)
    assert next_fire_after(cron("*/15 * * * *"), utc(2026, 1, 10, 3, 0)) == utc(2026, 1, 10, 3, 15)
    assert next_fire_after(cron("0 9 * * 1"), NOW) == utc(2026, 1, 12, 9, 0)  # next Monday


def test_cron_in_a_time_zone_is_returned_in_utc():
    winter = next_fire_after(cron("0 2 * * *", "Europe/Berlin"), utc(2026, 1, 10, 3, 0))
    summer = next_fire_after(cron("0 2 * * *", "Europe/Berlin"), utc(2026, 7, 10, 3, 0))
    assert winter == utc(2026, 1, 11, 1, 0)  # CET, UTC+1
    assert summer == utc(2026, 7, 11, 0, 0)  # CEST, UTC+2
    assert winter.tzinfo is UTC


def per_local_day(moments: list[datetime], zone: ZoneInfo) -> Counter:
    return Counter(m.astimezone(zone).date() for m in moments)


def test_cron_daily_across_spring_forward_fires_once_that_day():
    """2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST, 02:30 does not exist."""
    schedule = cron("30 2 * * *", "Europe/Berlin")
    found = fires(schedule, utc(2026, 3, 26, 12, 0), utc(2026, 4, 1, 12, 0))
    assert found == sorted(set(found))
    assert set(per_local_day(found, BERLIN).values()) == {1}
    assert len(found) == 6
    local = {m.astimezone(BERLIN).date().day: m.astimezone(BERLIN).time() for m in found}
    assert local[28].isoformat() == "02:30:00"
    assert local[29].isoformat() == "03:00:00"  # the first minute after the gap
    assert local[30].isoformat() == "02:30:00"
    assert utc(2026, 3, 29, 1, 0) in found


def test_cron_daily_across_fall_back_fires_once_that_day():
    """2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET, 02:30 happens twice."""
    schedule = cron("30 2 * * *", "Europe/Berlin")
    found = fires(schedule, utc(2026, 10, 22, 12, 0), utc(2026, 10, 28, 12, 0))
    assert set(per_local_day(found, BERLIN).values()) == {1}
    assert len(found) == 6
    assert utc(2026, 10, 25, 0, 30) in found  # the first 02:30 (CEST)
    assert utc(2026, 10, 25, 1, 30) not in found  # not the repeat (CET)
    assert utc(2026, 10, 26, 1, 30) in found  # CET from now on
    # asked from inside the repeated hour, it does not fire the repeat either
    assert next_fire_after(schedule, utc(2026, 10, 25, 1, 0)) == utc(2026, 10, 26, 1, 30)


def test_cron_wildcard_keeps_real_time_across_both_transitions():
    schedule = cron("*/30 * * * *", "Europe/Berlin")
    autumn = fires(schedule, utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 3, 0))
    assert autumn == [utc(2026, 10, 24, 22, 30) + timedelta(minutes=30 * i) for i in range(9)]
    spring = fires(schedule, utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 3, 0))
    assert spring == [utc(2026, 3, 28, 23, 30) + timedelta(minutes=30 * i) for i in range(7)]


@pytest.mark.parametrize("zone", ["America/New_York", "Australia/Sydney", "Asia/Kolkata"])
def test_cron_daily_is_once_a_day_for_a_year_in_any_zone(zone):
    schedule = cron("30 2 * * *", zone)
    found = fires(schedule, utc(2026, 1, 1), utc(2027, 1, 1))
    counts = per_local_day(found, ZoneInfo(zone))
    assert set(counts.values()) == {1}
    assert 364 <= len(found) <= 366


def test_cron_that_matches_no_date_never_fires():
    assert next_fire_after(cron("0 0 30 2 *"), NOW) is None


# ---------------------------------------------------------------------------------- once


def test_once_fires_at_its_time_while_it_is_ahead():
    at = utc(2026, 1, 10, 13, 0)
    schedule = Schedule(kind="once", run_at=at, timezone="UTC")
    assert next_fire_after(schedule, NOW) == at
    assert next_fire_after(schedule, at) is None
    assert next_fire_after(schedule, at + timedelta(seconds=1)) is None


# ---------------------------------------------------------------------------- validation


def test_validate_keeps_only_the_fields_of_the_kind():
    spec = validate("Interval", "15", "0 2 * * *", "", utc(2027, 1, 1), NOW)
    assert (spec.kind, spec.interval_minutes, spec.cron, spec.timezone, spec.run_at) == (
        "interval",
        15,
        None,
        "UTC",
        None,
    )
    spec = validate("cron", None, "  0   2 * * * ", "Europe/Berlin", None, NOW)
    assert (spec.cron, spec.timezone) == ("0 2 * * *", "Europe/Berlin")


def test_validate_reads_a_naive_run_at_in_the_schedules_zone():
    spec = validate("once", None, None, "Europe/Berlin", "2026-07-01T10:00", NOW)
    assert spec.run_at == utc(2026, 7, 1, 8, 0)
    spec = validate("once", None, None, "UTC", "2026-07-01T10:00:00+02:00", NOW)
    assert spec.run_at == utc(2026, 7, 1, 8, 0)


@pytest.mark.parametrize(
    ("args", "field", "message"),
    [
        (("interval", 0, None, "UTC", None), "interval_minutes", "At least 1 minute."),
        (("interval", -5, None, "UTC", None), "interval_minutes", "At least 1 minute."),
        (("interval", "ten", None, "UTC", None), "interval_minutes", "A whole number"),
        (("interval", 2.5, None, "UTC", None), "interval_minutes", "A whole number"),
        (("interval", None, None, "UTC", None), "interval_minutes", "Give a number"),
        (("interval", 10**7, None, "UTC", None), "interval_minutes", "At most"),
        (("cron", None, "61 * * * *", "UTC", None), "cron", "the minute must be 0 to 59"),
        (("cron", None, "0 25 * * *", "UTC", None), "cron", "the hour must be 0 to 23"),
        (("cron", None, "0 0 0 * *", "UTC", None), "cron", "the day of month must be 1 to 31"),
        (("cron", None, "0 0 1 13 *", "UTC", None), "cron", "the month must be 1 to 12"),
        (("cron", None, "0 0 * * 8", "UTC", None), "cron", "the day of week must be 0 to 7"),
        (("cron", None, "every day", "UTC", None), "cron", "Not a valid cron expression: "),
        (("cron", None, "0 0 * * * *", "UTC", None), "cron", "five fields"),
        (("cron", None, "@daily", "UTC", None), "cron", "five fields"),
        (("cron", None, "", "UTC", None), "cron", "Give a cron expression"),
        (("cron", None, "0 0 30 2 *", "UTC", None), "cron", "never fires"),
        (("cron", None, "0 2 * * *", "Mars/Olympus", None), "timezone", "Unknown time zone"),
        (("once", None, None, "UTC", utc(2026, 1, 10, 11)), "run_at", "This time is in the past."),
        (("once", None, None, "UTC", "tomorrow"), "run_at", "Not a date and time"),
        (("once", None, None, "UTC", None), "run_at", "Give a date and time."),
        (("weekly", None, None, "UTC", None), "kind", "Choose interval, cron or once."),
    ],
)
def test_validate_refuses_bad_input_with_a_message_per_field(args, field, message):
    with pytest.raises(ValidationError) as caught:
        validate(*args, NOW)
    assert message in caught.value.fields[field]
    assert message in caught.value.message


def test_validate_allows_a_past_time_when_asked():
    spec = validate("once", None, None, "UTC", utc(2026, 1, 1), NOW, allow_past=True)
    assert spec.run_at == utc(2026, 1, 1)


def test_unknown_time_zone_message_names_it():
    with pytest.raises(ValidationError) as caught:
        validate("interval", 5, None, "Nowhere/City", None, NOW)
    assert caught.value.fields == {"timezone": "Unknown time zone 'Nowhere/City'."}


# ------------------------------------------------------------------------------ describe


@pytest.mark.parametrize(
    ("schedule", "text"),
    [
        (interval(1, NOW), "every minute"),
        (interval(15, NOW), "every 15 minutes"),
        (interval(60, NOW), "every hour"),
        (interval(180, NOW), "every 3 hours"),
        (interval(2880, NOW), "every 2 days"),
        (cron("0 2 * * *", "Europe/Berlin"), "cron 0 2 * * * (Europe/Berlin)"),
        (
            Schedule(kind="once", run_at=utc(2026, 7, 1, 8, 0), timezone="Europe/Berlin"),
            "once at 2026-07-01 10:00 (Europe/Berlin)",
        ),
    ],
)
def test_describe(schedule, text):
    assert describe(schedule) == text
