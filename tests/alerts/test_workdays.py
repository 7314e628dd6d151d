"""Tests of the working-day calendar against the State Council's notices."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.notices import CalendarFile, shipped_notices
from alerts.workdays import WorkdayCalendar
from hub.errors import ConfigError, InvalidInput

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def calendar() -> WorkdayCalendar:
    return WorkdayCalendar.load()


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0) -> datetime:
    """A wall-clock time in Shanghai."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def test_shipped_years_and_festival_lengths() -> None:
    shipped = CalendarFile(years={y: spec for f in shipped_notices() for y, spec in f.years.items()})
    assert sorted(shipped.years) == [2024, 2025, 2026]
    lengths = {(y, f.en): len(f.rest_days) for y, spec in shipped.years.items() for f in spec.festivals}
    # Lengths as announced ("共N天") in each notice.
    assert lengths[(2024, "Spring Festival")] == 8
    assert lengths[(2025, "Spring Festival")] == 8
    assert lengths[(2026, "Spring Festival")] == 9
    assert lengths[(2025, "National Day and Mid-Autumn Festival")] == 8
    assert lengths[(2026, "National Day")] == 7
    makeups = [d for spec in shipped.years.values() for f in spec.festivals for d in f.makeup_workdays]
    assert len(makeups) == 8 + 5 + 6
    assert all(d.weekday() >= 5 for d in makeups)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 1, 1), False),  # New Year's Day, Thursday
        (date(2026, 1, 2), False),  # bridge Friday
        (date(2026, 1, 4), True),  # Sunday worked
        (date(2026, 2, 14), True),  # Saturday worked before the Spring Festival
        (date(2026, 2, 23), False),  # Monday, 7th day of the first month
        (date(2026, 2, 24), True),
        (date(2026, 2, 28), True),  # Saturday worked after it
        (date(2026, 5, 9), True),
        (date(2026, 9, 20), True),
        (date(2026, 10, 10), True),
        (date(2026, 10, 11), False),  # ordinary Sunday
        (date(2025, 1, 28), False),  # New Year's Eve is off since 2025
        (date(2024, 2, 9), True),  # ... but not in 2024
        (date(2025, 10, 8), False),
        (date(2025, 10, 9), True),
        (date(2024, 6, 10), False),
        (date(2024, 5, 11), True),
    ],
)
def test_is_workday(calendar: WorkdayCalendar, day: date, expected: bool) -> None:
    assert calendar.is_workday(day) is expected


def test_festival_names(calendar: WorkdayCalendar) -> None:
    spring = calendar.festival(date(2026, 2, 28))
    assert spring is not None and (spring.zh, spring.en) == ("春节", "Spring Festival")
    assert calendar.festival(date(2026, 3, 2)) is None


def test_day_before_national_day(calendar: WorkdayCalendar) -> None:
    # Opened Monday 30 Sep 2024 in the evening: Oct 1-7 are off, Oct 8-11 and Saturday Oct 12 are worked.
    assert calendar.add_workdays(at(2024, 9, 30, 18, 30), 5) == at(2024, 10, 13)


def test_friday_evening_before_spring_festival(calendar: WorkdayCalendar) -> None:
    # Friday 13 Feb 2026: Saturday 14 worked, 15-23 off, then Tue 24 .. Fri 27.
    assert calendar.nth_workday_after(at(2026, 2, 13, 20), 5) == date(2026, 2, 27)
    assert calendar.add_workdays(at(2026, 2, 13, 20), 1) == at(2026, 2, 15)


def test_ordinary_weekend(calendar: WorkdayCalendar) -> None:
    # Wednesday 11 Mar 2026 noon: Thu, Fri, Mon, Tue, Wed.
    assert calendar.add_workdays(at(2026, 3, 11, 12), 5) == at(2026, 3, 19)
    # Opened on a Saturday: the opening day never counts, whatever kind of day it is.
    assert calendar.add_workdays(at(2026, 3, 14, 9), 5) == at(2026, 3, 21)


def test_year_boundary(calendar: WorkdayCalendar) -> None:
    # Tuesday 30 Dec 2025: Wed 31, Jan 1-3 off, Sun 4 worked, Mon 5, Tue 6, Wed 7.
    assert calendar.nth_workday_after(date(2025, 12, 30), 5) == date(2026, 1, 7)
    assert calendar.workdays_between(date(2025, 12, 30), date(2026, 1, 7)) == 5


def test_workdays_between_is_inverse_of_nth(calendar: WorkdayCalendar) -> None:
    start = date(2024, 1, 1)
    for n in (1, 5, 17, 120, 400):
        assert calendar.workdays_between(start, calendar.nth_workday_after(start, n)) == n
    assert calendar.workdays_between(date(2024, 10, 14), date(2024, 9, 30)) == -6
    assert calendar.workdays_between(date(2024, 10, 1), date(2024, 10, 1)) == 0


def test_working_days_per_year(calendar: WorkdayCalendar) -> None:
    # Counted by hand: Mon-Fri days, minus holidays falling on them, plus make-up days.
    # 2024: 262 - 19 + 8 = 251; 2025: 261 - 18 + 5 = 248; 2026: 261 - 19 + 6 = 248.
    counts = [calendar.workdays_between(date(y - 1, 12, 31), date(y, 12, 31)) for y in (2025, 2026)]
    assert counts == [248, 248]
    assert sum(calendar.is_workday(date(2024, 1, 1) + timedelta(days=i)) for i in range(366)) == 251


def test_extension_file_adds_and_overrides_years(tmp_path: Path) -> None:
    extra = tmp_path / "cn_2099.yaml"
    extra.write_text(
        "version: 1\n"
        "years:\n"
        "  2099:\n"
        "    festivals:\n"
        "      - {zh: 元旦, en: New Year's Day, rest_days: [2099-01-01, 2099-01-02], makeup_workdays: [2099-01-04]}\n"
        "  2026:\n"
        "    festivals:\n"
        "      - {zh: 测试, en: Test, rest_days: [2026-03-02]}\n",
        encoding="utf-8",
    )
    calendar = WorkdayCalendar.load(extra)
    assert 2099 in calendar.official_years
    assert calendar.is_workday(date(2099, 1, 2)) is False  # Friday off
    assert calendar.is_workday(date(2099, 1, 4)) is True  # Sunday worked
    # The later file replaced 2026 as a whole: Spring Festival days are ordinary now.
    assert calendar.is_workday(date(2026, 3, 2)) is False
    assert calendar.is_workday(date(2026, 2, 16)) is True
    assert calendar.is_workday(date(2025, 10, 8)) is False  # 2025 untouched


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "years: {2099: {festivals: [{zh: a, en: b, rest_days: [2099-01-01], makeup_workdays: [2099-01-05]}]}}",
            "not a weekend day",
        ),
        (
            "years: {2099: {festivals: [{zh: a, en: b, rest_days: [2099-01-03], makeup_workdays: [2099-01-03]}]}}",
            "listed twice",
        ),
        ("years: {2099: {festivals: [{zh: a, en: b, rest_days: [2097-01-01]}]}}", "outside"),
        ("years: {2099: {festivals: [{zh: a, en: b, off: [2099-01-01]}]}}", "schema"),
        ("years: [unclosed", "not valid YAML"),
        ("version: 1\nyears: {}\n", "schema"),
    ],
)
def test_bad_extension_files(tmp_path: Path, body: str, problem: str) -> None:
    extra = tmp_path / "bad.yaml"
    extra.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        WorkdayCalendar.load(extra)
    assert problem in caught.value.message
    # One clear error that names the setting the file came from, and the file.
    assert caught.value.setting == "HUB_ALERTS_WORKDAY_NOTICES"
    assert str(extra) in caught.value.message or "2099" in caught.value.message


def test_missing_extension_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read") as caught:
        WorkdayCalendar.load(tmp_path / "absent.yaml")
    assert caught.value.setting == "HUB_ALERTS_WORKDAY_NOTICES"


def test_zone_handling(calendar: WorkdayCalendar) -> None:
    # 17:30 UTC on 30 Sep is 01:30 on 1 Oct in Shanghai: the case opens on the holiday itself.
    opened = datetime(2024, 9, 30, 17, 30, tzinfo=UTC)
    assert calendar.local_date(opened) == date(2024, 10, 1)
    assert calendar.add_workdays(opened, 1) == at(2024, 10, 9)
    assert calendar.add_workdays(opened, 1).utcoffset() == timedelta(hours=8)
    with pytest.raises(InvalidInput):
        calendar.add_workdays(datetime(2024, 9, 30, 12), 1)
    with pytest.raises(InvalidInput):
        calendar.add_workdays(at(2024, 9, 30, 12), 0)


def test_other_zone_with_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    calendar = WorkdayCalendar.load(zone="Europe/Berlin")
    # Friday 27 Mar 2026 (no Chinese holiday): the deadline falls after the spring-forward night.
    due = calendar.add_workdays(datetime(2026, 3, 27, 10, tzinfo=berlin), 1)
    assert due == datetime(2026, 3, 31, tzinfo=berlin)
    assert due.utcoffset() == timedelta(hours=2)
    with pytest.raises(ConfigError) as caught:
        WorkdayCalendar.load(zone="Mars/Olympus")
    assert caught.value.setting == "HUB_ALERTS_TIMEZONE"
