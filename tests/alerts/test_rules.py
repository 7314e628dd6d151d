"""Rules: parsing, every kind of bad rule, driver defaults, YAML overrides and scoping precedence."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.rules import BatteryRule, HouseholdRule, ThresholdRule, load_yaml, parse_rules
from alerts.ruleset import RuleSet
from drivers import DRIVERS
from hub.errors import InvalidInput

HEAT = {
    "name": "hot",
    "type": "threshold",
    "kind": "smoke",
    "metric": "temperature",
    "op": ">",
    "value": 45,
    "clear": 40,
    "severity": "major",
    "category": "fire",
}


def rule(**changes: Any) -> dict[str, Any]:
    """The HEAT rule with some keys changed (a value of None deletes the key)."""
    out = {**HEAT, **changes}
    return {k: v for k, v in out.items() if v is not None}


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown metric", rule(metric="humidity"), "rules[0].metric", "has no metric 'humidity'"),
    ("non-numeric metric", rule(metric="alarm"), "rules[0].metric", "not numeric"),
    ("op not allowed", rule(op="!="), "rules[0].op", "'<', '<=', '>' or '>='"),
    ("clear above a > trigger", rule(clear=50), "rules[0].clear", "at or below the trigger"),
    ("clear below a < trigger", rule(op="<", value=5, clear=0), "rules[0].clear", "at or above the trigger"),
    ("negative for_s", rule(for_s=-5), "rules[0].for_s", "greater than or equal to 0"),
    ("value out of range", rule(value=500, clear=40), "rules[0].value", "outside temperature's range"),
    ("nan value", rule(value=float("nan")), "rules[0].value", "finite"),
    ("unknown kind", rule(kind="toaster"), "rules[0].kind", "unknown kind 'toaster'"),
    ("threshold without kind", rule(kind=None), "rules[0].kind", "needs a kind"),
    (
        "unknown type",
        {"name": "x", "type": "magic", "severity": "info", "category": "test"},
        "rules[0]",
        "'magic'",
    ),
    ("unexpected key", rule(colour="red"), "rules[0].colour", "Extra inputs"),
    ("missing key", rule(metric=None), "rules[0].metric", "Field required"),
    ("bad category", rule(category="weather"), "rules[0].category", "category 'weather'"),
    ("bad severity", rule(severity="urgent"), "rules[0].severity", "'critical'"),
    ("bad place path", rule(place="/1/x/"), "rules[0].place", "pattern"),
    (
        "event the kind does not emit",
        {
            "name": "e",
            "type": "event",
            "kind": "smoke",
            "event": "pressed_long",
            "severity": "info",
            "category": "test",
        },
        "rules[0].event",
        "does not emit 'pressed_long'",
    ),
    (
        "event rule without severity",
        {"name": "e", "type": "event", "kind": "door", "event": "opened", "clear_event": "shut"},
        "rules[0].severity",
        "Field required",
    ),
    (
        "clear_event not emitted",
        {
            "name": "e",
            "type": "event",
            "kind": "door",
            "event": "opened",
            "clear_event": "shut",
            "severity": "info",
            "category": "intrusion",
        },
        "rules[0].clear_event",
        "does not emit 'shut'",
    ),
    (
        "clear_event is the event",
        {
            "name": "e",
            "type": "event",
            "kind": "door",
            "event": "opened",
            "clear_event": "opened",
            "severity": "info",
            "category": "intrusion",
        },
        "rules[0].clear_event",
        "the event itself",
    ),
    (
        "zero interval",
        {"name": "quiet", "type": "inactivity", "interval_s": 0, "severity": "major"},
        "rules[0].interval_s",
        "greater than 0",
    ),
    (
        "factor below one",
        {"name": "quiet", "type": "inactivity", "factor": 0.5, "severity": "major"},
        "rules[0].factor",
        "greater than or equal to 1",
    ),
    (
        "battery clear under the level",
        {"name": "b", "type": "battery", "below": 30, "clear": 20},
        "rules[0].clear",
        "at or above below=30",
    ),
    (
        "zero idle hours",
        {"name": "h", "type": "household", "severity": "major", "idle_hours": 0},
        "rules[0].idle_hours",
        "greater than 0",
    ),
    (
        "idle hours longer than the daytime",
        {"name": "h", "type": "household", "severity": "major", "idle_hours": 15},
        "rules[0].idle_hours",
        "longer than the daytime",
    ),
    (
        "empty window",
        {"name": "h", "type": "household", "severity": "major", "window": {"start": "07:00", "end": "07:00"}},
        "rules[0].window",
        "empty or crosses midnight",
    ),
    (
        "household rule with a kind",
        {"name": "h", "type": "household", "severity": "major", "kind": "door", "idle_hours": 3},
        "rules[0]",
        "scoped by place only",
    ),
    (
        "household rule with window and idle hours",
        {
            "name": "h",
            "type": "household",
            "severity": "major",
            "idle_hours": 3,
            "window": {"start": "07:00", "end": "12:00"},
        },
        "rules[0]",
        "exactly one of window or idle_hours",
    ),
    (
        "unknown time zone",
        {"name": "h", "type": "household", "severity": "major", "idle_hours": 3, "zone": "Mars/Olympus"},
        "rules[0].zone",
        "unknown time zone",
    ),
]


@pytest.mark.parametrize(("case", "data", "field", "text"), BAD, ids=[b[0] for b in BAD])
def test_bad_rule_is_refused_with_its_field(case: str, data: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        RuleSet.build(DRIVERS, parse_rules([data]))
    assert caught.value.field == field, case
    assert text in caught.value.message, caught.value.message
    assert caught.value.message.startswith(field), "the message names where the problem is"


def test_not_a_list_and_broken_yaml_are_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_rules({"name": "x"})
    assert caught.value.field == "rules"
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_yaml("- name: [unclosed")


def test_same_rule_twice_and_unknown_place_are_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        RuleSet.build(DRIVERS, parse_rules([HEAT, HEAT]))
    assert caught.value.field == "rules[1]"
    known = {"/1/", "/1/5/"}
    RuleSet.build(DRIVERS, parse_rules([rule(place="/1/5/")]), place_check=known.__contains__)
    with pytest.raises(InvalidInput) as caught:
        RuleSet.build(DRIVERS, parse_rules([rule(place="/2/")]), place_check=known.__contains__)
    assert caught.value.field == "rules[0].place"


def test_every_driver_default_loads_and_applies() -> None:
    rules = RuleSet.build(DRIVERS)
    for kind, driver in DRIVERS.items():
        names = rules.for_device(kind, None, None).names
        assert names == {r["name"] for r in driver.default_rules}, kind
    smoke = rules.for_device("smoke", None, None)
    assert smoke.span == DRIVERS["smoke"].heartbeat_interval_s * 2.5
    assert {t.metric for t in smoke.thresholds} == {"temperature", "battery"}
    assert set(smoke.events) == {"alarm", "tamper", "fault"} and set(smoke.clears) == {"alarm_cleared"}


def test_yaml_overrides_a_default_of_the_same_scope() -> None:
    text = """
rules:
  - {name: heat-high, type: threshold, kind: smoke, metric: temperature, op: ">", value: 60, clear: 52,
     severity: critical, category: fire}
  - {name: silent, type: inactivity, kind: door, interval_s: 600, severity: major}
"""
    rules = RuleSet.from_yaml(text, DRIVERS)
    heat = next(t for t in rules.for_device("smoke", None, None).thresholds if t.rule.name == "heat-high")
    assert (heat.limit, heat.clear) == (60, 52)
    assert rules.for_device("door", None, None).span == 600
    assert rules.for_device("smoke", None, None).span == 36_000  # other kinds keep their default
    assert len(rules) == sum(len(d.default_rules) for d in DRIVERS.values())


def test_most_specific_rule_of_a_name_wins() -> None:
    levels = [
        rule(value=45, clear=40),
        rule(value=46, clear=40, place="/1/"),
        rule(value=47, clear=40, place="/1/5/"),
        rule(value=48, clear=40, place="/1/5/19/", enabled=False),
        rule(value=49, clear=40, device="SMK-7"),
    ]
    rules = RuleSet.build(DRIVERS, parse_rules(levels), defaults=False)

    def limit(path: str | None, serial: str) -> float | None:
        found = [t.limit for t in rules.for_device("smoke", path, serial).thresholds if t.rule.name == "hot"]
        return found[0] if found else None

    assert limit(None, "SMK-1") == 45
    assert limit("/2/8/", "SMK-1") == 45
    assert limit("/1/9/", "SMK-1") == 46
    assert limit("/1/5/", "SMK-1") == 47
    assert limit("/1/5/20/", "SMK-1") == 47
    assert limit("/1/5/19/", "SMK-1") is None  # a disabled, more specific rule switches the name off
    assert limit("/1/5/19/", "SMK-7") == 49  # the device beats every place
    assert limit("/10/", "SMK-1") == 45  # "/10/" is not under "/1/"
    assert rules.for_device("door", "/1/5/", "SMK-7").thresholds == ()


def test_kind_specific_rule_beats_a_kindless_one_at_the_same_place() -> None:
    data = [
        {"name": "battery-low", "type": "battery", "below": 25, "clear": 30},
        {"name": "battery-low", "type": "battery", "kind": "door", "below": 10, "clear": 12},
    ]
    rules = RuleSet.build(DRIVERS, parse_rules(data))
    door = next(t for t in rules.for_device("door", None, None).thresholds if t.rule.name == "battery-low")
    smoke = next(t for t in rules.for_device("smoke", None, None).thresholds if t.rule.name == "battery-low")
    assert door.limit == 10
    assert (
        smoke.limit == 15
    )  # the smoke default names its kind, so it is more specific than the kindless rule
    assert isinstance(smoke.rule, ThresholdRule) and isinstance(door.rule, BatteryRule)


def test_household_rules_by_subtree() -> None:
    data = [
        {
            "name": "morning",
            "type": "household",
            "severity": "major",
            "window": {"start": "07:00", "end": "12:00"},
        },
        {
            "name": "morning",
            "type": "household",
            "severity": "critical",
            "place": "/1/5/",
            "window": {"start": "06:00", "end": "10:00"},
        },
    ]
    rules = RuleSet.build(DRIVERS, parse_rules(data), defaults=False)
    (general,) = rules.household_rules("/1/2/3/4/5/6/")
    (local,) = rules.household_rules("/1/5/3/4/5/6/")
    assert isinstance(general, HouseholdRule) and general.severity == "major"
    assert local.window is not None and local.window.end.hour == 10
