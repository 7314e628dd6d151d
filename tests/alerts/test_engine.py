"""The rule engine with an injected clock: hysteresis, for-durations, flapping, events, offline, swaps."""

from __future__ import annotations

import random
from typing import Any

from alerts.alert import Alert, AlertQueue, AlertState, fingerprint
from alerts.engine import RuleEngine
from alerts.rules import parse_rules
from alerts.ruleset import RuleSet
from drivers import DRIVERS
from drivers.base import Reading, Value
from hub.ingest.directory import DeviceEntry
from hub.ingest.pipeline import ReadingHook
from hub.priority import UrgentLane

T0 = 1_700_000_000.0


def entry(device_id: int, kind: str = "smoke", place_id: int | None = None) -> DeviceEntry:
    """A device as ingest sees it."""
    return DeviceEntry(
        id=device_id,
        serial=f"{kind.upper()}-{device_id}",
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


def reading(kind: str = "smoke", events: tuple[str, ...] = (), **metrics: Value) -> Reading:
    """A decoded uplink."""
    return Reading(kind, None, None, dict(metrics), events, False, not events)


def engine_with(*extra: dict[str, Any], defaults: bool = True) -> tuple[RuleEngine, list[Alert]]:
    """An engine over the driver defaults plus ``extra`` rules, emitting into a list."""
    out: list[Alert] = []
    rules = RuleSet.build(DRIVERS, parse_rules(list(extra)), defaults=defaults)
    return RuleEngine(rules, out.append, places={5: "/1/5/"}), out


HOT = {
    "name": "hot",
    "type": "threshold",
    "kind": "smoke",
    "metric": "temperature",
    "op": ">",
    "value": 40,
    "clear": 35,
    "for_s": 60,
    "severity": "major",
    "category": "fire",
}


def states(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.name, a.state.value) for a in alerts]


def test_engine_is_a_reading_hook() -> None:
    engine, out = engine_with()
    hook: ReadingHook = engine
    hook(entry(1), reading(temperature=60.0), T0)
    assert states(out) == [("heat-high", "firing")]


def test_hysteresis_keeps_one_alert_while_the_value_hovers() -> None:
    engine, out = engine_with()
    device = entry(1)
    for t, value in enumerate([21.0, 58.0, 56.0, 57.5, 51.0, 58.5, 50.5, 57.1, 50.0, 49.0, 58.0]):
        engine.on_reading(device, reading(temperature=value), T0 + t)
    assert states(out) == [("heat-high", "firing"), ("heat-high", "resolved"), ("heat-high", "firing")]
    assert out[0].value == 58.0 and out[1].value == 50.0 and out[1].ended_at == T0 + 8
    assert out[0].fingerprint == out[1].fingerprint == out[2].fingerprint


def test_noisy_value_at_the_limit_opens_one_alert_not_fifty() -> None:
    engine, out = engine_with()
    device, rng = entry(1), random.Random(7)
    for t in range(500):
        engine.on_reading(device, reading(temperature=57 + rng.uniform(-3, 3)), T0 + 30 * t)
    assert states(out) == [("heat-high", "firing")]
    engine.on_reading(device, reading(temperature=49.9), T0 + 20_000)
    assert states(out)[-1] == ("heat-high", "resolved") and len(out) == 2


def test_for_duration_fires_on_tick_once_the_condition_held() -> None:
    engine, out = engine_with(HOT, defaults=False)
    device = entry(1)
    engine.on_reading(device, reading(temperature=45.0), T0)
    assert engine.tick(T0 + 59) == 0 and out == []
    engine.on_reading(device, reading(temperature=46.0), T0 + 30)
    assert engine.tick(T0 + 60) == 1
    assert states(out) == [("hot", "firing")]
    assert out[0].started_at == T0 + 60 and out[0].value == 46.0
    assert engine.tick(T0 + 600) == 0 and len(out) == 1


def test_for_duration_starts_again_when_the_condition_breaks() -> None:
    engine, out = engine_with(HOT, defaults=False)
    device = entry(1)
    engine.on_reading(device, reading(temperature=45.0), T0)
    engine.on_reading(device, reading(temperature=39.0), T0 + 50)  # below the trigger: not held
    engine.tick(T0 + 61)
    assert out == []
    engine.on_reading(device, reading(temperature=41.0), T0 + 70)
    engine.tick(T0 + 129)
    assert out == []
    engine.on_reading(device, reading(temperature=41.0), T0 + 130)  # a reading past the due time fires too
    assert states(out) == [("hot", "firing")] and out[0].started_at == T0 + 130


def test_flapping_input_never_holds_for_the_duration() -> None:
    engine, out = engine_with(HOT, defaults=False)
    device = entry(1)
    for t in range(0, 3600, 20):
        engine.on_reading(device, reading(temperature=41.0 if t % 40 == 0 else 39.0), T0 + t)
        engine.tick(T0 + t + 10)
    assert out == []


def test_battery_rule_scoped_to_a_place_overrides_the_default() -> None:
    battery = {
        "name": "battery-low",
        "type": "battery",
        "kind": "smoke",
        "place": "/1/5/",
        "below": 30,
        "clear": 40,
    }
    engine, out = engine_with(battery)
    here, elsewhere = entry(1, place_id=5), entry(2)
    for device in (here, elsewhere):
        engine.on_reading(device, reading(battery=25), T0)
    assert [(a.device_id, a.state.value) for a in out] == [(1, "firing")]
    engine.on_reading(here, reading(battery=35), T0 + 1)
    engine.on_reading(here, reading(battery=40), T0 + 2)
    assert [(a.device_id, a.state.value) for a in out] == [(1, "firing"), (1, "resolved")]
    assert out[0].labels["place"] == "5" and out[0].category == "battery"


def test_event_with_clear_event_fires_once_and_resolves() -> None:
    engine, out = engine_with()
    device = entry(3)
    engine.on_reading(device, reading(events=("alarm",), alarm=True), T0)
    engine.on_reading(device, reading(events=("alarm",), alarm=True), T0 + 5)
    engine.on_reading(device, reading(events=("alarm_cleared",)), T0 + 60)
    assert states(out) == [("smoke-alarm", "firing"), ("smoke-alarm", "resolved")]
    assert (out[0].severity, out[0].category, out[0].value) == ("critical", "fire", "alarm")
    assert engine.active() == []


def test_one_shot_events_repeat_unless_a_cooldown_is_set() -> None:
    cooldown = {
        "name": "panic-single",
        "type": "event",
        "kind": "panic_button",
        "event": "pressed_single",
        "severity": "major",
        "category": "panic",
        "cooldown_s": 60,
    }
    engine, out = engine_with(cooldown)
    button = entry(4, "panic_button")
    for t, event in (
        (0, "pressed_long"),
        (10, "pressed_long"),
        (20, "pressed_single"),
        (30, "pressed_single"),
    ):
        engine.on_reading(button, reading("panic_button", (event,)), T0 + t)
    engine.on_reading(button, reading("panic_button", ("pressed_single",)), T0 + 81)
    assert [a.name for a in out] == ["panic-long", "panic-long", "panic-single", "panic-single"]
    assert all(a.firing for a in out) and engine.active() == []


def test_offline_fires_and_the_next_uplink_resolves() -> None:
    engine, out = engine_with({"name": "offline", "type": "offline", "kind": "door", "severity": "major"})
    door = entry(6, "door")
    engine.on_offline(door, T0)
    engine.on_offline(door, T0 + 1)
    engine.on_reading(door, reading("door", open=False), T0 + 30)
    assert states(out) == [("offline", "firing"), ("offline", "resolved")]
    engine.on_offline(entry(7), T0)  # smoke has no offline rule
    assert len(out) == 2


def test_offline_grace_is_cancelled_by_a_reconnect() -> None:
    grace = {"name": "offline", "type": "offline", "kind": "door", "severity": "major", "for_s": 120}
    engine, out = engine_with(grace)
    door = entry(6, "door")
    engine.on_offline(door, T0)
    engine.on_reading(door, reading("door", open=False), T0 + 30)
    engine.tick(T0 + 200)
    assert out == []
    engine.on_offline(door, T0 + 300)
    engine.tick(T0 + 419)
    assert out == []
    engine.tick(T0 + 420)
    assert states(out) == [("offline", "firing")] and out[0].started_at == T0 + 420


def test_any_uplink_rearms_the_deadman_even_a_repeated_value() -> None:
    engine, out = engine_with()
    device, span = entry(1), DRIVERS["smoke"].heartbeat_interval_s * 2.5
    for hour in range(0, 30):
        engine.on_reading(device, reading(temperature=21.0), T0 + 3600 * hour)
        engine.tick(T0 + 3600 * hour + 1800)
    assert out == []
    last = T0 + 3600 * 29
    engine.tick(last + span - 1)
    assert out == []
    engine.tick(last + span + 0.5)
    assert states(out) == [("silent", "firing")]
    assert out[0].started_at == last + span and out[0].value == last
    engine.on_reading(device, reading(temperature=21.0), last + span + 100)
    assert states(out)[-1] == ("silent", "resolved")


def test_swap_changes_rules_without_restart() -> None:
    engine, out = engine_with(HOT, defaults=False)
    device = entry(1)
    engine.on_reading(device, reading(temperature=45.0), T0)
    engine.tick(T0 + 60)
    assert states(out) == [("hot", "firing")]
    quick = {"name": "silent", "type": "inactivity", "kind": "smoke", "interval_s": 100, "severity": "major"}
    engine.swap(RuleSet.build(DRIVERS, parse_rules([quick]), defaults=False), T0 + 61)
    assert states(out) == [("hot", "firing"), ("hot", "resolved")]  # the rule is gone, so is its alert
    engine.on_reading(device, reading(temperature=45.0), T0 + 70)
    slow = {**quick, "interval_s": 1000}
    engine.swap(RuleSet.build(DRIVERS, parse_rules([slow]), defaults=False), T0 + 80)
    engine.tick(T0 + 1069)
    assert len(out) == 2  # the deadline moved from 170 to 1070 with the new interval
    engine.tick(T0 + 1070)
    assert states(out)[-1] == ("silent", "firing")


def test_fingerprint_is_stable_and_identifies_the_condition() -> None:
    engine, out = engine_with()
    engine.on_reading(entry(1), reading(temperature=60.0), T0)
    engine.on_reading(entry(2), reading(temperature=60.0), T0)
    assert out[0].fingerprint != out[1].fingerprint
    assert out[0].fingerprint == fingerprint(
        {"alertname": "heat-high", "rule_type": "threshold", "device": "SMOKE-1", "kind": "smoke"}
    )
    assert fingerprint({"a": "b", "c": "d"}) == fingerprint({"c": "d", "a": "b"})
    assert fingerprint({"a": "bc"}) != fingerprint({"a": "b", "c": ""})


def test_a_failing_sink_is_counted_and_does_not_stop_evaluation() -> None:
    seen: list[Alert] = []

    def sink(alert: Alert) -> None:
        seen.append(alert)
        raise RuntimeError("consumer down")

    engine = RuleEngine(RuleSet.build(DRIVERS), sink)
    engine.on_reading(entry(1), reading(temperature=60.0, battery=5), T0)
    assert len(seen) == 2 and engine.stats()["sink_errors"] == 2


async def test_alert_queue_carries_alerts_to_an_async_consumer() -> None:
    queue = AlertQueue()
    engine = RuleEngine(RuleSet.build(DRIVERS), queue)
    engine.on_reading(entry(1), reading(temperature=60.0), T0)
    alert = await queue.get()
    assert alert.name == "heat-high" and alert.state is AlertState.FIRING
    bounded = AlertQueue(maxsize=1)
    bounded(alert)
    bounded(alert)
    assert (len(bounded), bounded.dropped, bounded.put_total) == (1, 1, 1)
    assert bounded.drain() == [alert] and len(bounded) == 0


async def test_an_urgent_firing_alert_holds_the_lane_until_the_consumer_is_done() -> None:
    lane = UrgentLane()
    queue = AlertQueue(lane=lane, urgent_severities=("critical",))
    engine = RuleEngine(RuleSet.build(DRIVERS), queue)
    engine.on_reading(entry(1), reading(temperature=60.0, battery=5), T0)  # heat (critical), battery (minor)
    alerts = queue.drain()
    assert sorted(a.severity for a in alerts) == ["critical", "minor"]
    assert lane.holds == 1  # only the critical one: the MQTT reader yields to it
    for alert in alerts:
        queue.done(alert)
    assert lane.holds == 0
    engine.on_reading(entry(1), reading(temperature=20.0, battery=90), T0 + 60)  # both resolve
    resolved = queue.drain()
    assert resolved and all(not a.firing for a in resolved) and lane.holds == 0
