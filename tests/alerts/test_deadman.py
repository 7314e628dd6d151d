"""The deadman tracker: both schedules, lazy re-arming, restart from stored last_seen, its own heartbeat."""

from __future__ import annotations

import random

import pytest

from alerts.alert import Alert
from alerts.deadman import DeadmanTracker, WheelSchedule
from alerts.engine import RuleEngine
from alerts.rules import parse_rules
from alerts.ruleset import RuleSet
from drivers import DRIVERS
from drivers.base import Reading
from hub.ingest.directory import DeviceEntry
from hub.ingest.state import LiveStatus

T0 = 1_700_000_000.0
SCHEDULES = ["wheel", "heap"]


def entry(device_id: int, kind: str = "door") -> DeviceEntry:
    """A device as ingest sees it."""
    return DeviceEntry(
        id=device_id,
        serial=f"D-{device_id}",
        kind=kind,
        driver=DRIVERS[kind],
        place_id=None,
        responder_id=None,
        state="active",
        transport="mqtt",
        mqtt_hash=None,
        revoked=False,
        generation=1,
        test_until=None,
    )


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_expiry_recovery_and_lazy_rescheduling(schedule: str) -> None:
    tracker = DeadmanTracker(schedule)  # type: ignore[arg-type]
    for key in (1, 2, 3):
        assert tracker.touch(key, T0 + 100) is False
    tracker.touch(2, T0 + 150)  # heard again: only the dict changes
    tracker.touch(3, T0 + 130)
    assert tracker.expire(T0 + 99.5) == []
    assert tracker.expire(T0 + 100.2) == [(1, T0 + 100)]
    assert tracker.expire(T0 + 140) == [(3, T0 + 130)]
    assert tracker.rescheduled_total == 2  # 2 and 3 were moved when their old entries came up
    assert tracker.expired() == {1: T0 + 100, 3: T0 + 130}
    assert tracker.touch(1, T0 + 300) is True  # the next uplink recovers it
    assert (tracker.recovered_total, len(tracker), 1 in tracker) == (1, 2, True)
    tracker.forget(2)
    assert tracker.expire(T0 + 1000) == [(1, T0 + 300)]
    assert tracker.stats()["expired_total"] == 3


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_retime_to_an_earlier_deadline(schedule: str) -> None:
    tracker = DeadmanTracker(schedule)  # type: ignore[arg-type]
    tracker.touch(9, T0 + 1000)
    tracker.retime(9, T0 + 10)
    tracker.retime(404, T0)  # unknown keys are ignored
    assert tracker.expire(T0 + 10) == [(9, T0 + 10)]
    assert tracker.expire(T0 + 2000) == []  # the stale entry at 1000 finds nothing to do


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_random_traffic_matches_a_brute_force_model(schedule: str) -> None:
    rng, tracker = random.Random(11), DeadmanTracker(schedule, resolution=0.5)  # type: ignore[arg-type]
    due: dict[int, float] = {}
    fired: dict[int, float] = {}
    spans = [rng.uniform(1, 30) for _ in range(200)]  # one span per device, as a kind's rule gives
    now = T0
    for _ in range(4000):
        now += rng.uniform(0, 0.4)
        key = rng.randrange(200)
        deadline = now + spans[key]
        recovered = tracker.touch(key, deadline)
        assert recovered == (key in fired)
        fired.pop(key, None)
        due[key] = deadline
        if rng.random() < 0.1:
            got = dict(tracker.expire(now))
            want = {k: d for k, d in due.items() if d <= now}
            assert got == want
            for k in want:
                del due[k]
            fired.update(want)


def test_wheel_handles_past_deadlines_and_long_pauses() -> None:
    wheel = WheelSchedule(resolution=1.0)
    wheel.add(T0 - 86_400 * 365, 1)  # a device silent for a year before the restart
    wheel.add(T0 + 5, 2)
    assert wheel.due(T0) == [1]
    wheel.add(T0 - 10, 3)  # a past deadline after the first tick goes to the next due bucket
    assert wheel.due(T0 + 1) == [3]
    assert wheel.due(T0 + 86_400 * 30) == [2] and len(wheel) == 0


def test_stalled_evaluator_is_detectable() -> None:
    tracker = DeadmanTracker()
    assert tracker.stalled(T0, 5) is False  # not started: nothing to be late for
    tracker.start(T0)
    assert tracker.stalled(T0 + 4, 5) is False
    assert tracker.stalled(T0 + 6, 5) is True
    tracker.touch(1, T0 + 1)
    tracker.expire(T0 + 20)  # a late tick: found a deadline 19 s old
    assert tracker.last_lag == 19 and tracker.stalled(T0 + 20, 5) is True
    tracker.expire(T0 + 21)
    assert tracker.stalled(T0 + 22, 5) is False and tracker.max_lag == 19
    stats = tracker.stats()
    assert (stats["ticks"], stats["last_tick"], stats["expired_total"]) == (2, T0 + 21, 1)


def heartbeat() -> Reading:
    return Reading("door", None, None, {"open": False}, (), False, True)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_deadlines_survive_a_restart(schedule: str) -> None:
    span = DRIVERS["door"].heartbeat_interval_s * 2.5
    devices = [entry(1), entry(2), entry(3)]
    first: list[Alert] = []
    before = RuleEngine(RuleSet.build(DRIVERS), first.append, schedule=schedule)  # type: ignore[arg-type]
    before.on_reading(devices[0], heartbeat(), T0)
    before.on_reading(devices[1], heartbeat(), T0 + 5000)
    # The process stops at T0 + 6000; the stored statuses are what survives.
    statuses = [
        LiveStatus(1, last_seen=T0, online=True),
        LiveStatus(2, last_seen=T0 + 5000, online=True),
    ]
    restart = T0 + 7000
    after: list[Alert] = []
    engine = RuleEngine(RuleSet.build(DRIVERS), after.append, schedule=schedule)  # type: ignore[arg-type]
    assert engine.rearm(devices, statuses, restart) == 3
    engine.tick(T0 + span - 1)
    assert after == []
    engine.tick(T0 + span)
    assert [(a.device_id, a.started_at) for a in after] == [(1, T0 + span)]  # on time, not restart + span
    engine.tick(T0 + 5000 + span)
    assert [a.device_id for a in after] == [1, 2]
    engine.tick(restart + span)
    assert [a.device_id for a in after] == [1, 2, 3]  # never heard: counted from the restart
    assert engine.deadman.stalled(restart + span + 1, 10) is False


def test_rearm_skips_devices_that_may_not_send_and_reopens_offline() -> None:
    out: list[Alert] = []
    offline = {"name": "offline", "type": "offline", "kind": "door", "severity": "major"}
    engine = RuleEngine(RuleSet.build(DRIVERS, parse_rules([offline])), out.append)
    retired = entry(2)
    retired.state = "decommissioned"
    statuses = [
        LiveStatus(1, last_seen=T0, online=False),
        LiveStatus(2, last_seen=T0, online=False),
        LiveStatus(3, last_seen=T0, online=True),
    ]
    assert engine.rearm([entry(1), retired, entry(3)], statuses, T0 + 10) == 2
    assert 2 not in engine.deadman and 1 in engine.deadman and 3 in engine.deadman
    # Only the device stored as offline that may still send gets its offline alert back.
    assert [(a.name, a.device_id, a.state.value, a.started_at) for a in out] == [
        ("offline", 1, "firing", T0 + 10)
    ]


def test_rearm_with_the_default_rules_opens_nothing_for_an_offline_door() -> None:
    out: list[Alert] = []
    engine = RuleEngine(RuleSet.build(DRIVERS), out.append)
    assert engine.rearm([entry(1)], [LiveStatus(1, last_seen=T0, online=False)], T0 + 10) == 1
    assert out == []  # door has no offline rule by default


def test_an_earlier_deadline_added_after_the_first_tick_is_not_pushed_back() -> None:
    # A hub started with only smoke detectors (10 h spans) ticked once; then a door (2.5 h) is enrolled, or a rule
    # change shortens a span: its deadline must hold, not wait for the first smoke detector's.
    tracker = DeadmanTracker("wheel")
    tracker.arm(1, T0 + 36_000)
    assert tracker.expire(T0) == []
    tracker.arm(2, T0 + 9_000)
    assert tracker.expire(T0 + 9_000) == [(2, T0 + 9_000)]
    tracker.retime(1, T0 + 9_500)
    assert tracker.expire(T0 + 9_500.5) == [(1, T0 + 9_500)]
