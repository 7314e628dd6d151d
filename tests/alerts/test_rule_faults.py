"""One failing evaluation costs that evaluation only: the other devices, rules and households fire on time.

Faults come in through the engine's own inputs: the device directory it looks devices up in, and the rule set it
evaluates (a rule whose condition raises for one device, a household rule that cannot be raised for one home).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from alerts.alert import Alert
from alerts.engine import RuleEngine
from alerts.failures import ENGINE
from alerts.rules import HouseholdRule, parse_rules
from alerts.ruleset import DeviceRules, RuleSet
from drivers import DRIVERS
from hub.ingest.directory import DeviceEntry
from tests.alerts.test_engine import T0, entry, reading
from tests.alerts.test_household import HOME, MORNING, OTHER_HOME, PLACES, local


class Directory:
    """The engine's device lookup, with devices whose look-up fails (a broken row, a bug in the directory)."""

    def __init__(self, *devices: DeviceEntry) -> None:
        self.devices = {d.id: d for d in devices}
        self.broken: set[int] = set()

    def __call__(self, device_id: int) -> DeviceEntry | None:
        if device_id in self.broken:
            raise LookupError(f"device {device_id}: directory row unreadable")
        return self.devices.get(device_id)


def boom(value: float, limit: float) -> bool:
    """A condition with a bug: it raises instead of comparing."""
    raise ZeroDivisionError("division by zero in the heat-high condition")


class FaultyRules(RuleSet):
    """The driver defaults, but ``heat-high`` raises for one device and the morning check for one home."""

    def __init__(self, rules: RuleSet, serial: str | None = None, home: str | None = None) -> None:
        super().__init__(rules.rules, rules.drivers)
        self.serial, self.home = serial, home

    def for_device(self, kind: str, path: str | None, serial: str | None) -> DeviceRules:
        rules = super().for_device(kind, path, serial)
        if serial != self.serial:
            return rules
        broken = tuple(
            replace(t, trigger=boom) if t.rule.name == "heat-high" else t for t in rules.thresholds
        )
        return replace(rules, thresholds=broken)

    def household_rules(self, path: str) -> tuple[HouseholdRule, ...]:
        rules = super().household_rules(path)
        return tuple(Unraisable(r) for r in rules) if path == self.home else rules


class Unraisable:
    """A household rule whose alert cannot be built (its severity cannot be read)."""

    def __init__(self, rule: HouseholdRule) -> None:
        self._rule = rule

    def __getattr__(self, name: str) -> Any:
        if name == "severity":
            raise KeyError("severity table has no entry for this household")
        return getattr(self._rule, name)


def firing(out: list[Alert]) -> list[tuple[str, str | None]]:
    return [(a.name, a.device_serial or a.labels.get("household")) for a in out if a.firing]


def test_a_device_whose_evaluation_fails_does_not_drop_the_others_no_activity_alarms() -> None:
    devices = [entry(i) for i in (1, 2, 3)]
    directory = Directory(*devices)
    out: list[Alert] = []
    engine = RuleEngine(RuleSet.build(DRIVERS, []), out.append, devices=directory)
    assert engine.rearm(devices, [], T0) == 3
    span = engine.rules.for_device("smoke", None, None).span
    assert span is not None
    directory.broken.add(2)
    due = T0 + span + 0.5
    # The tick that finds all three silent fires the two it can, at once.
    engine.tick(due)
    assert firing(out) == [("silent", "SMOKE-1"), ("silent", "SMOKE-3")]
    assert engine.last_tick_failures == 1 and engine.failures.counts[ENGINE] == 1
    last = engine.failures.last[ENGINE]
    assert last.subject == "2" and "unreadable" in last.error
    # The failed one is tried again at every tick (counted each time) and fires once it can.
    engine.tick(due + 0.5)
    assert engine.failures.counts[ENGINE] == 2 and len(out) == 2
    directory.broken.clear()
    engine.tick(due + 1.0)
    assert engine.last_tick_failures == 0
    assert firing(out)[-1] == ("silent", "SMOKE-2")
    assert out[-1].started_at == T0 + span  # its own deadline, not the tick that finally raised it


def test_a_rule_that_raises_for_one_device_costs_that_rule_only() -> None:
    out: list[Alert] = []
    engine = RuleEngine(FaultyRules(RuleSet.build(DRIVERS, []), serial="SMOKE-2"), out.append)
    hot_and_smoky = reading(events=("alarm",), temperature=60.0)
    for device in (entry(1), entry(2), entry(3)):
        engine.on_reading(device, hot_and_smoky, T0)
    # The faulty device still raises its smoke alarm from the same reading; the other two raise both.
    assert sorted(firing(out)) == [
        ("heat-high", "SMOKE-1"),
        ("heat-high", "SMOKE-3"),
        ("smoke-alarm", "SMOKE-1"),
        ("smoke-alarm", "SMOKE-2"),
        ("smoke-alarm", "SMOKE-3"),
    ]
    failures = engine.failures
    assert dict(failures.counts) == {"heat-high": 1}
    assert failures.of("heat-high")["last_error"]["subject"] == "SMOKE-2"
    assert "ZeroDivisionError" in failures.of("heat-high")["last_error"]["error"]


def test_a_household_check_that_fails_is_retried_and_the_other_home_fires_on_time() -> None:
    rules = RuleSet.build(DRIVERS, parse_rules([MORNING]), defaults=False)
    out: list[Alert] = []
    engine = RuleEngine(FaultyRules(rules, home=PLACES[HOME]), out.append, places=PLACES)
    sensors = [
        DeviceEntry(i, f"S-{i}", "door", DRIVERS["door"], home, None, "active", "mqtt", None, False, 1, None)
        for i, home in ((1, HOME), (2, OTHER_HOME))
    ]
    engine.rearm(sensors, [], local(5, 6))
    engine.tick(local(5, 12))
    assert firing(out) == [("morning", str(OTHER_HOME))]
    assert engine.failures.counts["morning"] == 1
    assert engine.failures.last["morning"].subject == f"household {HOME}"
    engine.tick(local(5, 12, 1))
    assert engine.failures.counts["morning"] == 2  # retried, not forgotten
