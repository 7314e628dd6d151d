"""Working-day calendar of the Chinese mainland: public holidays and make-up working days (调休)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.errors import ConfigError, InvalidInput

__all__ = [
    "DEFAULT_ZONE",
    "CalendarFile",
    "CalendarYear",
    "Festival",
    "UncoveredYearError",
    "WorkdayCalendar",
    "read_calendar_file",
    "shipped_calendar_file",
]

DEFAULT_ZONE = "Asia/Shanghai"
_SETTING = "alerts.workday_calendar"
_SATURDAY = 5
_log = logging.getLogger(__name__)


class Festival(BaseModel):
    """One holiday of a notice: the days off and the weekend days worked in exchange."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)
    rest_days: tuple[date, ...] = Field(min_length=1)
    makeup_workdays: tuple[date, ...] = ()


class CalendarYear(BaseModel):
    """The State Council's arrangement for one year."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    notice: str = ""
    published: date | None = None
    festivals: tuple[Festival, ...]


class CalendarFile(BaseModel):
    """The shape of `cn_workdays.yaml` and of every extension file."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: Literal[1] = 1
    years: dict[int, CalendarYear]


class UncoveredYearError(ConfigError):
    """The calendar has no data for the year asked about."""

    def __init__(self, year: int, covered: Iterable[int]) -> None:
        listed = ", ".join(str(y) for y in sorted(covered)) or "none"
        super().__init__(
            _SETTING,
            f"year {year} is not covered (covered: {listed}); add a calendar file for it "
            "or enable the Mon-Fri fallback explicitly",
        )
        self.year = year


def shipped_calendar_file() -> CalendarFile:
    """Read the calendar shipped in `alerts/data/cn_workdays.yaml`."""
    source = resources.files("alerts.data").joinpath("cn_workdays.yaml")
    return _parse(source.read_text(encoding="utf-8"), "alerts/data/cn_workdays.yaml")


def read_calendar_file(path: Path | str) -> CalendarFile:
    """Read and validate one calendar file (blocking: call at startup, not in the loop)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(_SETTING, f"cannot read {path}: {exc.strerror}") from exc
    return _parse(text, str(path))


def _parse(text: str, origin: str) -> CalendarFile:
    try:
        return CalendarFile.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise ConfigError(_SETTING, f"{origin} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        raise ConfigError(_SETTING, f"{origin} does not match the calendar schema: {exc}") from exc


def _zone(zone: str | ZoneInfo) -> ZoneInfo:
    if isinstance(zone, ZoneInfo):
        return zone
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError("alerts.timezone", f"unknown time zone {zone!r}") from exc


class WorkdayCalendar:
    """Answers "is this a working day" and counts working days; uncovered years are an error."""

    def __init__(
        self,
        years: Mapping[int, CalendarYear],
        *,
        zone: str | ZoneInfo = DEFAULT_ZONE,
        fallback_weekends: bool = False,
    ) -> None:
        self._zone = _zone(zone)
        self._covered = frozenset(years)
        self._fallback = fallback_weekends
        self._warned: set[int] = set()
        self._rest: dict[date, Festival] = {}
        self._makeup: dict[date, Festival] = {}
        for year, spec in sorted(years.items()):
            for festival in spec.festivals:
                self._add(year, festival)

    @classmethod
    def load(
        cls,
        *extra_files: Path | str,
        zone: str | ZoneInfo = DEFAULT_ZONE,
        fallback_weekends: bool = False,
        include_shipped: bool = True,
    ) -> WorkdayCalendar:
        """Build from the shipped file plus extra files; a later file replaces whole years."""
        files = [shipped_calendar_file()] if include_shipped else []
        files += [read_calendar_file(path) for path in extra_files]
        years: dict[int, CalendarYear] = {}
        for loaded in files:
            years.update(loaded.years)
        return cls(years, zone=zone, fallback_weekends=fallback_weekends)

    def _add(self, year: int, festival: Festival) -> None:
        label = f"{year} {festival.en}"
        for day in (*festival.rest_days, *festival.makeup_workdays):
            # A notice may reach back into late December of the year before (New Year's bridge days).
            if day.year not in (year - 1, year):
                raise ConfigError(_SETTING, f"{label}: {day} lies outside the notice's year")
        for day in festival.makeup_workdays:
            if day.weekday() < _SATURDAY:
                raise ConfigError(_SETTING, f"{label}: make-up working day {day} is not a weekend day")
        for day in festival.rest_days:
            if day in self._makeup or self._rest.get(day, festival) != festival:
                raise ConfigError(_SETTING, f"{label}: {day} is listed twice")
            self._rest[day] = festival
        for day in festival.makeup_workdays:
            if day in self._rest or self._makeup.get(day, festival) != festival:
                raise ConfigError(_SETTING, f"{label}: {day} is listed twice")
            self._makeup[day] = festival

    @property
    def zone(self) -> ZoneInfo:
        """The zone in which a day starts and ends."""
        return self._zone

    @property
    def covered_years(self) -> frozenset[int]:
        """Years the data files describe."""
        return self._covered

    def local_date(self, value: date | datetime) -> date:
        """The calendar day of `value` in this calendar's zone (aware datetimes only)."""
        if not isinstance(value, datetime):
            return value
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(f"{value.isoformat()} has no time zone", field="datetime")
        return value.astimezone(self._zone).date()

    def _check_covered(self, day: date) -> None:
        if day.year in self._covered:
            return
        if not self._fallback:
            raise UncoveredYearError(day.year, self._covered)
        if day.year not in self._warned:
            self._warned.add(day.year)
            _log.warning("workday calendar does not cover %d: counting Mon-Fri as working days", day.year)

    def is_workday(self, value: date | datetime) -> bool:
        """True on Mon-Fri that are not holidays, and on make-up working days."""
        day = self.local_date(value)
        self._check_covered(day)
        if day in self._makeup:
            return True
        return day not in self._rest and day.weekday() < _SATURDAY

    def festival(self, value: date | datetime) -> Festival | None:
        """The holiday that makes `value` a rest day or a make-up working day, if any."""
        day = self.local_date(value)
        self._check_covered(day)
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
        if not isinstance(start, datetime):
            raise InvalidInput("start must be a timezone-aware datetime", field="start")
        last = self.nth_workday_after(start, n)
        return datetime.combine(last + timedelta(days=1), time(), tzinfo=self._zone)

    def workdays_between(self, start: date | datetime, end: date | datetime) -> int:
        """Working days d with start < d <= end (local days); negative when end precedes start."""
        first, last = self.local_date(start), self.local_date(end)
        if last < first:
            return -self.workdays_between(last, first)
        count, day = 0, first
        while day < last:
            day += timedelta(days=1)
            count += self.is_workday(day)
        return count
