"""Tests of SLA policies and clocks (explicit `now` everywhere)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from alerts.sla import Milestone, SlaClock, SlaPolicies, SlaPolicy, Urgency, default_policies
from alerts.workdays import WorkdayCalendar
from hub.errors import Conflict, InvalidInput

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def calendar() -> WorkdayCalendar:
    return WorkdayCalendar.load()


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, second: int = 0) -> datetime:
    """A wall-clock time in Shanghai."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def test_urgent_category_counts_wall_clock(calendar: WorkdayCalendar) -> None:
    # A fall at 23:58 on the eve of National Day is not paused by the holiday.
    policy = default_policies().for_category("fall")
    assert policy.urgency is Urgency.URGENT
    clock = SlaClock.start(policy, at(2024, 9, 30, 23, 58), calendar)
    assert clock.accept_due == at(2024, 10, 1, 0, 3)
    assert clock.resolve_due == at(2024, 10, 1, 1, 58)
    assert clock.reply_due is None
    assert clock.remaining(at(2024, 10, 1, 0, 0)) == timedelta(minutes=3)
    assert not clock.is_overdue(at(2024, 10, 1, 0, 2, second=59))
    assert clock.overdue(at(2024, 10, 1, 0, 3)) == [Milestone.ACCEPT]


def test_ordinary_category_counts_working_days(calendar: WorkdayCalendar) -> None:
    policy = default_policies().for_category("battery")
    assert policy.urgency is Urgency.ORDINARY
    clock = SlaClock.start(policy, at(2024, 9, 30, 16), calendar)
    assert clock.accept_due is None and clock.resolve_due is None
    assert clock.reply_due == at(2024, 10, 13)  # end of Saturday 12 Oct, a make-up working day
    assert not clock.is_overdue(at(2024, 10, 12, 23, 59, second=59))
    assert clock.is_overdue(at(2024, 10, 13))
    assert clock.remaining(at(2024, 10, 14)) == timedelta(days=-1)


def test_unknown_category_uses_default_or_is_refused() -> None:
    policies = default_policies()
    assert policies.for_category("streetlight") == policies.for_category("citizen_report")
    strict = SlaPolicies(categories=dict(policies.categories))
    with pytest.raises(InvalidInput) as caught:
        strict.for_category("streetlight")
    assert caught.value.field == "category"


def test_meeting_milestones_stops_the_clock(calendar: WorkdayCalendar) -> None:
    clock = SlaClock.start(default_policies().for_category("panic"), at(2026, 3, 2, 9), calendar)
    accepted = clock.meet(Milestone.ACCEPT, at(2026, 3, 2, 9, 4))
    assert clock.met == {}  # the original is untouched
    assert accepted.pending() == [(Milestone.RESOLVE, at(2026, 3, 2, 11))]
    assert not accepted.is_overdue(at(2026, 3, 2, 10))
    assert accepted.remaining(at(2026, 3, 2, 10)) == timedelta(hours=1)
    with pytest.raises(Conflict):
        accepted.meet(Milestone.ACCEPT, at(2026, 3, 2, 9, 5))
    resolved = accepted.meet(Milestone.RESOLVE, at(2026, 3, 2, 12))
    assert resolved.remaining(at(2026, 3, 3)) is None
    assert not resolved.is_overdue(at(2026, 3, 3))
    assert resolved.breached() == [Milestone.RESOLVE]


def test_resolving_meets_the_earlier_steps(calendar: WorkdayCalendar) -> None:
    clock = SlaClock.start(default_policies().for_category("fire"), at(2026, 3, 2, 9), calendar)
    done = clock.meet(Milestone.RESOLVE, at(2026, 3, 2, 9, 2))
    assert done.met == {Milestone.ACCEPT: at(2026, 3, 2, 9, 2), Milestone.RESOLVE: at(2026, 3, 2, 9, 2)}
    assert done.breached() == []


def test_mixed_policy_orders_pending_by_due_time(calendar: WorkdayCalendar) -> None:
    policy = SlaPolicy(urgency=Urgency.ORDINARY, accept_within=timedelta(hours=4), reply_within_workdays=2)
    # Friday 13 Feb 2026, 20:00: accept by Saturday 00:00; reply by end of Tuesday 24 Feb.
    clock = SlaClock.start(policy, at(2026, 2, 13, 20), calendar)
    assert [m for m, _ in clock.pending()] == [Milestone.ACCEPT, Milestone.REPLY]
    assert clock.reply_due == at(2026, 2, 25)
    late = at(2026, 2, 20, 12)
    assert clock.overdue(late) == [Milestone.ACCEPT]
    assert clock.meet(Milestone.ACCEPT, late).remaining(late) == timedelta(days=4, hours=12)


def test_times_in_other_zones(calendar: WorkdayCalendar) -> None:
    # 16:30 UTC on Friday 3 Jan 2025 is 00:30 on Saturday 4 Jan in Shanghai.
    opened = datetime(2025, 1, 3, 16, 30, tzinfo=UTC)
    clock = SlaClock.start(default_policies().for_category("offline"), opened, calendar)
    assert clock.reply_due == at(2025, 1, 11)  # Mon 6 .. Fri 10
    assert clock.is_overdue(datetime(2025, 1, 10, 16, 0, tzinfo=UTC))
    assert not clock.is_overdue(datetime(2025, 1, 10, 15, 59, tzinfo=UTC))


def test_naive_times_are_refused(calendar: WorkdayCalendar) -> None:
    policy = default_policies().for_category("sos")
    with pytest.raises(InvalidInput):
        SlaClock.start(policy, datetime(2026, 3, 2, 9), calendar)
    clock = SlaClock.start(policy, at(2026, 3, 2, 9), calendar)
    with pytest.raises(InvalidInput):
        clock.is_overdue(datetime(2026, 3, 2, 10))
    with pytest.raises(InvalidInput):
        clock.meet(Milestone.ACCEPT, at(2026, 3, 2, 8))


def test_policies_load_from_yaml() -> None:
    text = """
    categories:
      smoke: {urgency: urgent, accept_within: PT2M, resolve_within: PT1H}
      streetlight: {urgency: ordinary, reply_within_workdays: 3}
    """
    policies = SlaPolicies.model_validate(yaml.safe_load(text))
    assert policies.for_category("smoke").accept_within == timedelta(minutes=2)
    assert policies.for_category("streetlight").reply_within_workdays == 3
    with pytest.raises(ValidationError):
        SlaPolicy(urgency=Urgency.URGENT)
    with pytest.raises(ValidationError):
        SlaPolicy.model_validate({"urgency": "ordinary", "reply_within_workdays": 0})
