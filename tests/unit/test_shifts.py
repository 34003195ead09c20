"""Shifts on the plant's clock (core/shifts.py): past midnight, across daylight saving
time changes in Europe/Berlin, and with one shift a day."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.settings import settings_from_env
from core.shifts import ShiftClock

BERLIN = ZoneInfo("Europe/Berlin")
THREE_SHIFTS = [time(6), time(14), time(22)]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)


def hours(shift) -> float:
    return (shift.end - shift.start) / timedelta(hours=1)


def test_the_night_shift_runs_past_midnight_into_the_next_day():
    clock = ShiftClock(THREE_SHIFTS, BERLIN)
    shift = clock.containing(local(2026, 1, 10, 3, 0))
    assert shift.subject == "2026-01-09 22:00"
    assert (shift.start, shift.end) == (utc(2026, 1, 9, 21), utc(2026, 1, 10, 5))
    # the start belongs to its shift, the end to the next
    assert clock.containing(local(2026, 1, 10, 6, 0)).subject == "2026-01-10 06:00"
    assert clock.containing(local(2026, 1, 10, 5, 59, 59)).subject == "2026-01-09 22:00"
    assert clock.containing(local(2026, 1, 9, 23, 0)).subject == "2026-01-09 22:00"


def test_a_naive_instant_is_taken_as_utc():
    clock = ShiftClock(THREE_SHIFTS, BERLIN)
    assert clock.containing(datetime(2026, 1, 10, 4, 59)).subject == "2026-01-09 22:00"
    assert clock.containing(datetime(2026, 1, 10, 5, 0)).subject == "2026-01-10 06:00"


def test_the_night_the_clocks_go_forward_is_an_hour_shorter():
    clock = ShiftClock(THREE_SHIFTS, BERLIN)  # 2026-03-29 02:00 CET -> 03:00 CEST
    night = clock.named("2026-03-28 22:00")
    assert (night.start, night.end) == (utc(2026, 3, 28, 21), utc(2026, 3, 29, 4))
    assert hours(night) == 7
    assert hours(clock.named("2026-03-29 06:00")) == 8
    assert clock.containing(local(2026, 3, 29, 3, 30)) == night


def test_the_night_the_clocks_go_back_is_an_hour_longer():
    clock = ShiftClock(THREE_SHIFTS, BERLIN)  # 2026-10-25 03:00 CEST -> 02:00 CET
    night = clock.named("2026-10-24 22:00")
    assert (night.start, night.end) == (utc(2026, 10, 24, 20), utc(2026, 10, 25, 5))
    assert hours(night) == 9
    # both 02:30s of that night are in it
    first = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=0)
    second = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1)
    assert clock.containing(first) == night == clock.containing(second)


def test_one_shift_a_day_lasts_a_day_as_the_clock_has_it():
    clock = ShiftClock([time(6)], BERLIN)
    assert clock.containing(local(2026, 1, 10, 5, 0)).subject == "2026-01-09 06:00"
    assert clock.containing(local(2026, 1, 10, 6, 0)).subject == "2026-01-10 06:00"
    assert hours(clock.named("2026-01-10 06:00")) == 24
    assert hours(clock.named("2026-03-28 06:00")) == 23
    assert hours(clock.named("2026-10-24 06:00")) == 25


def test_a_start_the_clock_skips_is_taken_at_the_offset_before_the_change():
    clock = ShiftClock([time(2, 30)], BERLIN)
    skipped = clock.named("2026-03-29 02:30")  # no 02:30 that night: 03:30 CEST
    assert skipped.start == utc(2026, 3, 29, 1, 30)
    assert clock.named("2026-03-28 02:30").end == skipped.start


def test_shifts_follow_each_other_without_gap_or_overlap_across_both_changes():
    clock = ShiftClock(THREE_SHIFTS, BERLIN)
    for first_day in (date(2026, 3, 27), date(2026, 10, 23)):
        instant = datetime.combine(first_day, time(0), tzinfo=UTC)
        shift = clock.containing(instant)
        while instant < datetime.combine(first_day + timedelta(days=4), time(0), tzinfo=UTC):
            if not shift.contains(instant):
                following = clock.containing(instant)
                assert following.start == shift.end
                shift = following
            assert clock.containing(instant) == shift
            instant += timedelta(minutes=15)


def test_shifts_ended_between_two_instants():
    clock = ShiftClock(THREE_SHIFTS, BERLIN)
    ended = clock.ended_between(utc(2026, 1, 10, 0), utc(2026, 1, 11, 0))
    assert [shift.subject for shift in ended] == [
        "2026-01-09 22:00",
        "2026-01-10 06:00",
        "2026-01-10 14:00",
    ]
    # after: exclusive; until: inclusive
    assert [s.subject for s in clock.ended_between(utc(2026, 1, 10, 5), utc(2026, 1, 10, 13))] == [
        "2026-01-10 06:00"
    ]
    assert clock.ended_between(utc(2026, 1, 10, 6), utc(2026, 1, 10, 12)) == []
    assert clock.ended_between(utc(2026, 1, 10, 12), utc(2026, 1, 10, 6)) == []


def test_shifts_ended_in_a_day_of_one_shift_a_day_past_the_change():
    clock = ShiftClock([time(6)], BERLIN)
    ended = clock.ended_between(utc(2026, 3, 29, 0), utc(2026, 3, 30, 0))
    assert [shift.subject for shift in ended] == ["2026-03-28 06:00"]
    assert ended[0].end == utc(2026, 3, 29, 4)


def test_a_name_that_is_no_shift_says_what_to_give():
    clock = ShiftClock(THREE_SHIFTS, BERLIN)
    with pytest.raises(ValueError, match="06:00, 14:00, 22:00"):
        clock.named("2026-01-10 07:00")
    with pytest.raises(ValueError, match="YYYY-MM-DD HH:MM"):
        clock.named("yesterday")
    with pytest.raises(ValueError):
        ShiftClock([], BERLIN)


def test_the_clock_from_settings():
    settings = settings_from_env(
        {"SHIFTS": "22:00, 06:00,14:00", "PLANT_TIMEZONE": "Europe/Berlin"}
    )
    clock = ShiftClock.from_settings(settings)
    assert clock.starts == THREE_SHIFTS
    assert clock.containing(utc(2026, 7, 1, 20, 30)).subject == "2026-07-01 22:00"
