"""Years without a State Council notice: estimated from python-holidays, marked, and warned about from 1 December."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest

from alerts.sla import Milestone, SlaClock, default_policies
from alerts.workdays import Due, WorkdayCalendar

SHANGHAI = ZoneInfo("Asia/Shanghai")
# What the State Council would plausibly publish for 2027 (New Year's Day on a Friday: Jan 1-3 off, nothing worked).
NOTICE_2027 = """\
version: 1
years:
  2027:
    notice: 国务院办公厅关于2027年部分节假日安排的通知
    festivals:
      - {zh: 元旦, en: New Year's Day, rest_days: [2027-01-01, 2027-01-02, 2027-01-03]}
"""


def at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    """A wall-clock time in Shanghai."""
    return datetime(year, month, day, hour, tzinfo=SHANGHAI)


def notice(tmp_path: Path, text: str, name: str = "cn_notice_2027.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_library_agrees_with_every_shipped_notice_day_by_day() -> None:
    # The check docs/sla.md reports: python-holidays' China data against the 2024-2026 notices.
    calendar = WorkdayCalendar.load()
    library = holidays.country_holidays("CN")
    day, differ = date(2024, 1, 1), []
    while day <= date(2026, 12, 31):
        if calendar.is_workday(day) != library.is_working_day(day):
            differ.append(day)
        day += timedelta(days=1)
    assert differ == []
    assert calendar.official_years == {2024, 2025, 2026}
    assert not calendar.is_estimated(date(2026, 12, 31)) and calendar.is_estimated(date(2027, 1, 1))


def test_citizen_case_of_2026_12_28_without_a_2027_notice() -> None:
    # Monday 28 Dec 2026 + 5 working days: Dec 29, 30, 31, (Jan 1 New Year's Day), Jan 4, Jan 5.
    # The hub used to count 2027 as plain Mon-Fri (Jan 1 worked) and answered 2027-01-05 00:00.
    calendar = WorkdayCalendar.load()
    due = calendar.due_after(at(2026, 12, 28, 10), 5)
    assert due.at == at(2027, 1, 6)
    assert due.estimated is True
    clock = SlaClock.start(default_policies().for_category("citizen_report"), at(2026, 12, 28, 10), calendar)
    assert clock.reply_due == at(2027, 1, 6) and clock.estimated == {Milestone.REPLY}
    # A deadline that stays inside 2026 rests on the notice alone.
    inside = calendar.due_after(at(2026, 12, 21, 10), 5)
    assert inside.at == at(2026, 12, 29) and inside.estimated is False


def test_citizen_case_of_2026_12_28_with_a_2027_notice(tmp_path: Path) -> None:
    calendar = WorkdayCalendar.load(notice(tmp_path, NOTICE_2027))
    assert calendar.official_years == {2024, 2025, 2026, 2027}
    due = calendar.due_after(at(2026, 12, 28, 10), 5)
    assert due.at == at(2027, 1, 6) and due.estimated is False
    clock = SlaClock.start(default_policies().for_category("citizen_report"), at(2026, 12, 28, 10), calendar)
    assert clock.estimated == frozenset()


def test_a_notice_that_moves_a_day(tmp_path: Path) -> None:
    # A bridge: Monday 4 Jan off in exchange for Saturday 9 Jan worked, and (like the 2019 notice did for
    # 2018-12-29) a make-up Saturday reaching back into December of the year before.
    moved = notice(
        tmp_path,
        "version: 1\nyears:\n  2027:\n    festivals:\n"
        "      - {zh: 元旦, en: New Year's Day, rest_days: [2027-01-01, 2027-01-02, 2027-01-03, 2027-01-04],"
        " makeup_workdays: [2026-12-26, 2027-01-09]}\n",
    )
    plain, calendar = WorkdayCalendar.load(), WorkdayCalendar.load(moved)
    assert plain.is_workday(date(2027, 1, 4)) and not calendar.is_workday(date(2027, 1, 4))
    assert not plain.is_workday(date(2027, 1, 9)) and calendar.is_workday(date(2027, 1, 9))
    # Dec 29, 30, 31, Jan 5, Jan 6: one day later than without the notice.
    assert calendar.due_after(at(2026, 12, 28, 10), 5) == Due(at(2027, 1, 7), estimated=False)
    # Friday 25 Dec 2026 + 1: the Saturday the 2027 notice makes a working day.
    assert plain.add_workdays(at(2026, 12, 25, 9), 1) == at(2026, 12, 29)
    assert calendar.add_workdays(at(2026, 12, 25, 9), 1) == at(2026, 12, 27)
    festival = calendar.festival(date(2026, 12, 26))
    assert festival is not None and festival.zh == "元旦"


def test_a_later_file_replaces_a_year_whole(tmp_path: Path) -> None:
    first = notice(tmp_path, NOTICE_2027, "a.yaml")
    corrected = notice(
        tmp_path,
        "version: 1\nyears:\n  2027:\n    festivals:\n"
        "      - {zh: 元旦, en: New Year's Day, rest_days: [2027-01-01]}\n",
        "b.yaml",
    )
    calendar = WorkdayCalendar.load(first, corrected)
    assert calendar.is_workday(date(2027, 1, 4)) and not calendar.is_workday(date(2027, 1, 1))
    # 2027 is official now: a day the library would call a Spring Festival holiday is a plain weekday.
    assert not holidays.country_holidays("CN").is_working_day(date(2027, 2, 9))
    assert calendar.is_workday(date(2027, 2, 9)) and not calendar.is_estimated(date(2027, 2, 9))


@pytest.mark.parametrize(
    ("now", "missing"),
    [
        (datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC), ()),  # 23:59:59 on 30 Nov in Shanghai
        (datetime(2026, 11, 30, 16, 0, tzinfo=UTC), (2027,)),  # midnight of 1 Dec in Shanghai
        (datetime(2026, 12, 31, 15, 59, tzinfo=UTC), (2027,)),
        (datetime(2027, 3, 1, tzinfo=UTC), (2027,)),  # the whole year stays estimated without its notice
        (datetime(2026, 6, 1, tzinfo=UTC), ()),
    ],
)
def test_missing_notices_follow_the_clock(now: datetime, missing: tuple[int, ...]) -> None:
    calendar = WorkdayCalendar.load()
    assert calendar.missing_notices(now) == missing
    warning = calendar.warning(now)
    if missing:
        assert warning is not None and "2027" in warning and "HUB_ALERTS_WORKDAY_NOTICES" in warning
    else:
        assert warning is None


def test_no_warning_once_the_notice_is_on_file(tmp_path: Path) -> None:
    calendar = WorkdayCalendar.load(notice(tmp_path, NOTICE_2027))
    assert calendar.missing_notices(datetime(2026, 12, 3, tzinfo=UTC)) == ()
    assert calendar.warning(datetime(2027, 6, 1, tzinfo=UTC)) is None
    assert calendar.missing_notices(datetime(2027, 12, 1, tzinfo=UTC)) == (2028,)
