"""Household activity windows in Asia/Shanghai: windows, idle hours, day boundaries and away mode."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.alert import Alert
from alerts.engine import RuleEngine
from alerts.household import idle_due, window_due
from alerts.rules import HouseholdRule, parse_rules
from alerts.ruleset import RuleSet
from drivers import DRIVERS
from drivers.base import Reading
from hub.errors import NotFound
from hub.ingest.directory import DeviceEntry
from hub.ingest.state import LiveStatus

SHANGHAI = ZoneInfo("Asia/Shanghai")
HOME, OTHER_HOME, BUILDING = 6, 7, 5
PLACES = {BUILDING: "/1/2/3/4/5/", HOME: "/1/2/3/4/5/6/", OTHER_HOME: "/1/2/3/4/5/7/"}
MORNING = {
    "name": "morning",
    "type": "household",
    "severity": "major",
    "window": {"start": "07:00", "end": "12:00"},
}
IDLE = {"name": "idle", "type": "household", "severity": "critical", "idle_hours": 3}


def local(day: int, hour: int, minute: int = 0) -> float:
    """Epoch seconds of a wall-clock time in Shanghai, March 2024."""
    return dt.datetime(2024, 3, day, hour, minute, tzinfo=SHANGHAI).timestamp()


def entry(device_id: int, kind: str, place_id: int) -> DeviceEntry:
    """A device as ingest sees it."""
    return DeviceEntry(
        id=device_id,
        serial=f"S-{device_id}",
        kind=kind,
        driver=DRIVERS[kind],
        place_id=place_id,
        responder_id=None,
        state="active",
        transport="mqtt",
        mqtt_hash=None,
        revoked=False,
        generation=1,
        test_until=None,
    )


def door(events: tuple[str, ...] = ("opened",)) -> Reading:
    """A door uplink: with events it is activity, without it is a heartbeat."""
    return Reading("door", None, None, {"open": bool(events)}, events, bool(events), not events)


def household_engine(*rules: dict[str, Any]) -> tuple[RuleEngine, list[Alert]]:
    out: list[Alert] = []
    engine = RuleEngine(
        RuleSet.build(DRIVERS, parse_rules(list(rules)), defaults=False), out.append, places=PLACES
    )
    return engine, out


def the_rule(data: dict[str, Any]) -> HouseholdRule:
    (rule,) = parse_rules([data])
    assert isinstance(rule, HouseholdRule)
    return rule


def test_window_due_across_the_utc_day_boundary() -> None:
    rule = the_rule(MORNING)
    # 07:00 in Shanghai is 23:00 UTC of the day before: the local day decides.
    assert window_due(rule, local(4, 20)) == local(5, 12)
    assert window_due(rule, local(5, 6, 59)) == local(5, 12)
    assert window_due(rule, local(5, 7)) == local(6, 12)  # active in today's window: tomorrow is next
    assert window_due(rule, local(5, 23, 30)) == local(6, 12)
    assert window_due(rule, local(31, 20)) == dt.datetime(2024, 4, 1, 12, tzinfo=SHANGHAI).timestamp()


def test_idle_due_counts_daytime_only() -> None:
    rule = the_rule(IDLE)
    assert idle_due(rule, local(4, 9)) == local(4, 12)
    assert idle_due(rule, local(4, 18)) == local(4, 21)
    assert idle_due(rule, local(4, 19)) == local(5, 10)  # the evening and night do not count
    assert idle_due(rule, local(5, 2)) == local(5, 10)


def test_no_activity_in_the_morning_window_fires_once_and_activity_resolves() -> None:
    engine, out = household_engine(MORNING)
    front = entry(1, "door", HOME)
    engine.on_reading(front, door(), local(4, 20))
    engine.on_reading(front, door(()), local(5, 8))  # a heartbeat is not activity
    assert engine.tick(local(5, 11, 59)) == 0
    assert engine.tick(local(5, 12)) == 1
    alert = out[0]
    assert (alert.name, alert.state.value, alert.started_at) == ("morning", "firing", local(5, 12))
    assert alert.labels["household"] == str(HOME) and alert.category == "activity"
    assert engine.tick(local(6, 12, 30)) == 0  # still the same alert the next day, not a second one
    engine.on_reading(front, door(("closed",)), local(6, 13))
    assert [a.state.value for a in out] == ["firing", "resolved"]
    # Activity at 13:00 on the 6th is after that day's window: the 7th's window is the next to check.
    assert engine.tick(local(7, 11, 59)) == 0
    assert engine.tick(local(7, 12)) == 1
    assert [a.state.value for a in out] == ["firing", "resolved", "firing"]


def test_activity_before_the_window_does_not_count_for_it() -> None:
    engine, out = household_engine(MORNING)
    front = entry(1, "door", HOME)
    engine.on_reading(front, door(), local(5, 6, 59))
    engine.tick(local(5, 12))
    assert [a.name for a in out] == ["morning"]
    engine.on_reading(front, door(), local(5, 12, 5))
    engine.on_reading(front, door(), local(6, 7, 0))
    engine.tick(local(6, 12))
    assert [a.state.value for a in out] == ["firing", "resolved"]


def test_devices_outside_the_household_and_other_homes_do_not_count() -> None:
    engine, out = household_engine(MORNING)
    engine.on_reading(entry(1, "door", HOME), door(), local(4, 20))
    engine.on_reading(entry(2, "door", OTHER_HOME), door(), local(4, 20))
    engine.on_reading(entry(3, "door", BUILDING), door(), local(5, 9))  # the stairwell door
    engine.on_reading(entry(2, "door", OTHER_HOME), door(), local(5, 9))
    engine.tick(local(5, 12))
    assert [(a.name, a.labels["household"]) for a in out] == [("morning", str(HOME))]


def test_away_mode_suppresses_until_cleared() -> None:
    engine, out = household_engine(MORNING, IDLE)
    front = entry(1, "door", HOME)
    engine.on_reading(front, door(), local(4, 8))
    engine.tick(local(4, 11))
    assert [a.name for a in out] == ["idle"]
    engine.set_away(HOME, local(4, 11, 30))  # a neighbour replies "she is at her daughter's"
    assert [a.state.value for a in out] == ["firing", "resolved"]
    assert engine.households.is_away(HOME)
    engine.tick(local(8, 12))  # four mornings with no activity, no alert
    assert len(out) == 2
    engine.clear_away(HOME, local(8, 18))
    engine.tick(local(8, 21))
    assert [a.name for a in out[2:]] == ["idle"] and out[2].started_at == local(8, 21)
    engine.tick(local(9, 12))
    assert [a.name for a in out[2:]] == ["idle", "morning"]


def test_set_away_on_an_unknown_place_is_refused() -> None:
    engine, _ = household_engine(MORNING)
    with pytest.raises(NotFound):
        engine.set_away(999, local(4, 8))


def test_rearm_counts_from_the_stored_last_activity() -> None:
    engine, out = household_engine(MORNING)
    devices = [entry(1, "door", HOME), entry(2, "panic_button", HOME), entry(3, "door", OTHER_HOME)]
    statuses = [
        LiveStatus(1, last_seen=local(5, 9), last_activity=local(4, 19), online=True),
        LiveStatus(2, last_seen=local(5, 9), last_activity=local(5, 8), online=True),
        LiveStatus(3, last_seen=local(5, 9), last_activity=local(4, 19), online=True),
    ]
    engine.rearm(devices, statuses, local(5, 10))
    engine.tick(local(5, 12))
    assert [a.labels["household"] for a in out] == [str(OTHER_HOME)]  # the pendant moved at 08:00 at home


def test_swapping_rules_resolves_household_alerts_of_removed_rules() -> None:
    engine, out = household_engine(MORNING)
    engine.on_reading(entry(1, "door", HOME), door(), local(4, 20))
    engine.tick(local(5, 12))
    engine.swap(RuleSet.build(DRIVERS, parse_rules([IDLE]), defaults=False), local(5, 12, 30))
    assert [(a.name, a.state.value) for a in out] == [("morning", "firing"), ("morning", "resolved")]
    engine.tick(local(5, 15, 30))
    assert [(a.name, a.state.value) for a in out][-1] == ("idle", "firing")
