"""Shifts on the plant's clock: which shift an instant falls in, which shifts ended
in a span of time, and the shift a person names ("2026-03-29 22:00").

A shift starts at one of ``SHIFTS`` (times of day in ``PLANT_TIMEZONE``) and ends
when the next starts, so the last shift of a day runs past midnight into the next
day, and with one start a day a shift lasts a whole day. Shifts are reckoned on
the local clock and turned into instants with zoneinfo, so across a change to or
from daylight saving time a shift is an hour shorter or longer, as the people on
it live it. A start that the clock skips (02:30 on the spring-forward night) is
taken at the same offset as before the change (03:30 summer time, the instant
the skipped time would have been); a start the clock passes twice (02:30 on the
fall-back night) is taken the first time.

A shift is named by its start as configured: its local date and start time,
``"YYYY-MM-DD HH:MM"`` (the ``subject`` of its report).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from zoneinfo import ZoneInfo

from core.settings import Settings

SUBJECT_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True)
class Shift:
    """One shift: its start and end as UTC instants, and its start on the plant's
    clock as configured (``day`` and ``start_time``)."""

    start: datetime
    end: datetime
    day: date
    start_time: time

    @property
    def subject(self) -> str:
        """The shift's name: ``"YYYY-MM-DD HH:MM"`` (its start, plant time)."""
        return f"{self.day:%Y-%m-%d} {self.start_time:%H:%M}"

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


class ShiftClock:
    """The configured shift starts on a plant's time zone."""

    def __init__(self, starts: Sequence[time], zone: tzinfo) -> None:
        if not starts:
            raise ValueError("at least one shift start is needed (SHIFTS)")
        self.starts = sorted(set(starts))
        self.zone = zone

    @classmethod
    def from_settings(cls, settings: Settings) -> ShiftClock:
        return cls(settings.shift_starts, ZoneInfo(settings.plant_timezone))

    def _instant(self, day: date, start: time) -> datetime:
        return datetime.combine(day, start, tzinfo=self.zone).astimezone(UTC)

    def _starts_around(self, low: datetime, high: datetime) -> list[tuple[datetime, date, time]]:
        """Every shift start (instant, local day, start time) from two local days before
        ``low`` to two after ``high``, in order: enough to hold the shifts around both,
        whatever the offsets."""
        first = _aware(low).astimezone(self.zone).date() - timedelta(days=2)
        last = _aware(high).astimezone(self.zone).date() + timedelta(days=2)
        found: dict[datetime, tuple[datetime, date, time]] = {}
        day = first
        while day <= last:
            for start in self.starts:
                instant = self._instant(day, start)
                found.setdefault(instant, (instant, day, start))
            day += timedelta(days=1)
        return [found[instant] for instant in sorted(found)]

    def _shifts(self, starts: Sequence[tuple[datetime, date, time]]) -> Iterable[Shift]:
        for (start, day, start_time), (end, _, _) in pairwise(starts):
            yield Shift(start=start, end=end, day=day, start_time=start_time)

    def containing(self, instant: datetime) -> Shift:
        """The shift ``instant`` falls in (a naive ``instant`` is taken as UTC)."""
        instant = _aware(instant)
        for shift in self._shifts(self._starts_around(instant, instant)):
            if shift.contains(instant):
                return shift
        raise AssertionError("unreachable: the starts around an instant enclose it")

    def ended_between(self, after: datetime, until: datetime) -> list[Shift]:
        """The shifts that ended after ``after`` and no later than ``until``, oldest first."""
        after, until = _aware(after), _aware(until)
        if until <= after:
            return []
        return [
            shift
            for shift in self._shifts(self._starts_around(after, until))
            if after < shift.end <= until
        ]

    def named(self, subject: str) -> Shift:
        """The shift named ``"YYYY-MM-DD HH:MM"`` (its start, plant time); a
        ``ValueError`` that says what to type when it names none."""
        try:
            started = datetime.strptime(subject.strip(), SUBJECT_FORMAT)
        except ValueError:
            raise ValueError(
                f"{subject!r} is not a shift: give its start as YYYY-MM-DD HH:MM, plant time"
            ) from None
        return self.starting(started.date(), started.time())

    def starting(self, day: date, start_time: time) -> Shift:
        """The shift that starts at ``start_time`` (one of the configured starts) on the
        plant's ``day``."""
        if start_time not in self.starts:
            known = ", ".join(start.strftime("%H:%M") for start in self.starts)
            raise ValueError(
                f"no shift starts at {start_time:%H:%M}; the shifts start at {known} (SHIFTS)"
            )
        start = self._instant(day, start_time)
        later = self._starts_around(start, start)
        end = next(instant for instant, _, _ in later if instant > start)
        return Shift(start=start, end=end, day=day, start_time=start_time)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
