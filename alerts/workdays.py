"""Working-day calendar of the Chinese mainland: public holidays and make-up working days (调休).

A year the State Council's notice is on file for (shipped 2024-2026, or the operator's files) is official: its rest
days and make-up working days are exactly the notice's. Any other year is *estimated* from the `holidays` library
(python-holidays: the statutory days, moved off weekends, without make-up days), and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from importlib.metadata import version
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from alerts.notices import (
    NOTICES_SETTING,
    CalendarFile,
    CalendarYear,
    Festival,
    read_notice_file,
    shipped_notices,
)
from hub.errors import ConfigError, InvalidInput

__all__ = ["DEFAULT_ZONE", "ZONE_SETTING", "Due", "WorkdayCalendar"]

DEFAULT_ZONE = "Asia/Shanghai"
ZONE_SETTING = "HUB_ALERTS_TIMEZONE"
_SATURDAY = 5
_DECEMBER = 12


@dataclass(frozen=True, slots=True)
class Due:
    """A working-day deadline, and whether any day counted to reach it rests on estimated data."""

    at: datetime
    estimated: bool


def _zone(zone: str | ZoneInfo) -> ZoneInfo:
    if isinstance(zone, ZoneInfo):
        return zone
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(ZONE_SETTING, f"unknown time zone {zone!r}") from exc


class WorkdayCalendar:
    """Answers "is this a working day" and counts working days: notices first, the library's estimate otherwise."""

    def __init__(
        self,
        notices: Mapping[int, CalendarYear],
        *,
        zone: str | ZoneInfo = DEFAULT_ZONE,
        setting: str = NOTICES_SETTING,
    ) -> None:
        self._zone = _zone(zone)
        self._setting = setting
        self._official = frozenset(notices)
        self._rest: dict[date, Festival] = {}
        self._makeup: dict[date, Festival] = {}
        for year, spec in sorted(notices.items()):
            for festival in spec.festivals:
                self._add(year, festival)
        self._estimate = holidays.country_holidays("CN")

    @classmethod
    def load(
        cls,
        *notice_files: Path | str,
        zone: str | ZoneInfo = DEFAULT_ZONE,
        include_shipped: bool = True,
        setting: str = NOTICES_SETTING,
    ) -> WorkdayCalendar:
        """The shipped notices, then ``notice_files`` in order; a later file replaces whole years."""
        files: list[CalendarFile] = shipped_notices() if include_shipped else []
        files += [read_notice_file(path, setting) for path in notice_files]
        years: dict[int, CalendarYear] = {}
        for loaded in files:
            years.update(loaded.years)
        return cls(years, zone=zone, setting=setting)

    def _add(self, year: int, festival: Festival) -> None:
        label = f"{year} {festival.en}"
        for day in (*festival.rest_days, *festival.makeup_workdays):
            # A notice may reach back into late December of the year before (New Year's bridge days).
            if day.year not in (year - 1, year):
                raise ConfigError(self._setting, f"{label}: {day} lies outside the notice's year")
        for day in festival.makeup_workdays:
            if day.weekday() < _SATURDAY:
                raise ConfigError(self._setting, f"{label}: make-up working day {day} is not a weekend day")
        for day in festival.rest_days:
            if day in self._makeup or self._rest.get(day, festival) != festival:
                raise ConfigError(self._setting, f"{label}: {day} is listed twice")
            self._rest[day] = festival
        for day in festival.makeup_workdays:
            if day in self._rest or self._makeup.get(day, festival) != festival:
                raise ConfigError(self._setting, f"{label}: {day} is listed twice")
            self._makeup[day] = festival

    @property
    def zone(self) -> ZoneInfo:
        """The zone in which a day starts and ends."""
        return self._zone

    @property
    def official_years(self) -> frozenset[int]:
        """Years a State Council notice is on file for."""
        return self._official

    @property
    def estimate_source(self) -> str:
        """What estimates the other years (the library and its version)."""
        return f"python-holidays {version('holidays')}"

    def local_date(self, value: date | datetime) -> date:
        """The calendar day of `value` in this calendar's zone (aware datetimes only)."""
        if not isinstance(value, datetime):
            return value
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"{value.isoformat()} has no time zone", field="datetime")
        return value.astimezone(self._zone).date()

    def is_estimated(self, value: date | datetime) -> bool:
        """True when no notice on file decides this day (the library's estimate does)."""
        day = self.local_date(value)
        return day.year not in self._official and day not in self._rest and day not in self._makeup

    def is_workday(self, value: date | datetime) -> bool:
        """True on Mon-Fri that are not holidays, and on make-up working days."""
        day = self.local_date(value)
        if day in self._makeup:
            return True
        if day in self._rest:
            return False
        if day.year in self._official:
            return day.weekday() < _SATURDAY
        return bool(self._estimate.is_working_day(day))

    def festival(self, value: date | datetime) -> Festival | None:
        """The notice's holiday that makes `value` a rest day or a make-up working day, if any."""
        day = self.local_date(value)
        return self._rest.get(day) or self._makeup.get(day)

    def nth_workday_after(self, value: date | datetime, n: int) -> date:
        """The n-th working day strictly after the day of `value` (n >= 1)."""
        if n < 1:
            raise InvalidInput(f"n must be at least 1, not {n}", field="n")
        day = self.local_date(value)
        while n:
            day += timedelta(days=1)
            if self.is_workday(day):
                n -= 1
        return day

    def add_workdays(self, start: datetime, n: int) -> datetime:
        """End (next local midnight) of the n-th working day after the day `start` falls on."""
        return self.due_after(start, n).at

    def due_after(self, start: datetime, n: int) -> Due:
        """``add_workdays``, and whether a day counted on the way rests on estimated data."""
        if not isinstance(start, datetime):
            raise InvalidInput("start must be a timezone-aware datetime", field="start")
        first = self.local_date(start)
        last = self.nth_workday_after(first, n)
        estimated = any(self.is_estimated(day) for day in _days(first + timedelta(days=1), last))
        return Due(datetime.combine(last + timedelta(days=1), time(), tzinfo=self._zone), estimated)

    def workdays_between(self, start: date | datetime, end: date | datetime) -> int:
        """Working days d with start < d <= end (local days); negative when end precedes start."""
        first, last = self.local_date(start), self.local_date(end)
        if last < first:
            return -self.workdays_between(last, first)
        return sum(self.is_workday(day) for day in _days(first + timedelta(days=1), last))

    def missing_notices(self, now: datetime) -> tuple[int, ...]:
        """Years whose deadlines are estimates now: this year without a notice, and from 1 December the next."""
        today = self.local_date(now)
        years = [today.year, today.year + 1] if today.month == _DECEMBER else [today.year]
        return tuple(y for y in years if y not in self._official)

    def warning(self, now: datetime) -> str | None:
        """What an operator must be told while deadlines become estimates, or None."""
        missing = self.missing_notices(now)
        if not missing:
            return None
        listed = ", ".join(str(y) for y in missing)
        return (
            f"no State Council holiday notice on file for {listed}: working-day deadlines reaching into it are "
            f"estimated ({self.estimate_source}, no make-up working days); add the notice file to {self._setting}"
        )


def _days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)
