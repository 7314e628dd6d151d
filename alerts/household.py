"""Household activity windows for elderly people living alone, with an "away" state that suppresses them."""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from alerts.alert import Alert, AlertSink, make_alert
from alerts.failures import FailureSink
from alerts.rules import HouseholdRule

__all__ = ["HouseholdWatch", "idle_due", "next_due", "window_due"]

RulesFor = Callable[[str], tuple[HouseholdRule, ...]]
_DAY = dt.timedelta(days=1)


def _at(day: dt.date, time: dt.time, zone: ZoneInfo) -> float:
    return dt.datetime.combine(day, time, tzinfo=zone).timestamp()


def window_due(rule: HouseholdRule, since: float) -> float:
    """When the first window that starts after ``since`` (the last activity) ends: the check time."""
    assert rule.window is not None
    zone, window = rule.tz, rule.window
    day = dt.datetime.fromtimestamp(since, zone).date()
    if _at(day, window.start, zone) <= since:
        day += _DAY  # activity inside (or after) today's window satisfies today
    return _at(day, window.end, zone)


def idle_due(rule: HouseholdRule, since: float) -> float:
    """When ``idle_hours`` of daytime will have passed since ``since``; nights do not count."""
    assert rule.idle_hours is not None
    zone, daytime, span = rule.tz, rule.daytime, rule.idle_hours * 3600
    day = dt.datetime.fromtimestamp(since, zone).date()
    base = max(since, _at(day, daytime.start, zone))
    if base + span <= _at(day, daytime.end, zone):
        return base + span
    # Quiet late in the evening is sleep: the count starts again at the next morning.
    return _at(day + _DAY, daytime.start, zone) + span


def next_due(rule: HouseholdRule, since: float) -> float:
    """When ``rule`` next needs a look at a household last active at ``since``."""
    return window_due(rule, since) if rule.window is not None else idle_due(rule, since)


@dataclass(slots=True)
class _Home:
    place_id: int
    path: str
    since: float
    away: bool = False
    rules: tuple[HouseholdRule, ...] = ()
    due: dict[str, float] = field(default_factory=dict)
    queued: dict[str, float] = field(default_factory=dict)
    firing: dict[str, Alert] = field(default_factory=dict)


class HouseholdWatch:
    """Per household: the last activity, the next check of each rule, firing alerts and away mode."""

    def __init__(self, rules_for: RulesFor, emit: AlertSink, failed: FailureSink | None = None) -> None:
        self._rules_for = rules_for
        self._emit = emit
        self._failed = failed
        self._homes: dict[int, _Home] = {}
        self._heap: list[tuple[float, int, str]] = []

    def __len__(self) -> int:
        return len(self._homes)

    def watch(self, place_id: int, path: str, since: float) -> None:
        """Start watching a household whose last activity (or first sighting) is ``since``."""
        home = self._homes.get(place_id)
        if home is None:
            home = self._homes[place_id] = _Home(place_id, path, since, rules=self._rules_for(path))
            self._schedule(home)
        elif since > home.since:
            self.activity(place_id, path, since)

    def activity(self, place_id: int, path: str, now: float) -> None:
        """A person was active in the household: resolve its alerts and start counting again."""
        home = self._homes.get(place_id)
        if home is None:
            self.watch(place_id, path, now)
            return
        home.since = max(home.since, now)
        self._resolve_all(home, now)
        self._schedule(home)

    def set_away(self, place_id: int, path: str, now: float) -> None:
        """The resident is away: resolve the household's alerts and raise none until cleared."""
        self.watch(place_id, path, now)
        home = self._homes[place_id]
        home.away = True
        self._resolve_all(home, now)

    def clear_away(self, place_id: int, now: float) -> None:
        """The resident is back: count from now, as if they had just been active."""
        home = self._homes.get(place_id)
        if home is None or not home.away:
            return
        home.away = False
        home.since = max(home.since, now)
        self._schedule(home)

    def is_away(self, place_id: int) -> bool:
        """Whether the household is in away mode."""
        home = self._homes.get(place_id)
        return home is not None and home.away

    def firing(self) -> list[Alert]:
        """Every firing household alert."""
        return [alert for home in self._homes.values() for alert in home.firing.values()]

    def reload(self, rules_for: RulesFor, now: float) -> None:
        """Take new rules: alerts of rules that no longer apply resolve, every check is recomputed."""
        self._rules_for = rules_for
        self._heap.clear()
        for home in self._homes.values():
            home.queued.clear()
            home.rules = rules_for(home.path)
            names = {rule.name for rule in home.rules}
            for name in [n for n in home.firing if n not in names]:
                self._emit(home.firing.pop(name).resolved(now))
            self._schedule(home)

    def tick(self, now: float) -> int:
        """Fire every household rule whose check time has come; returns how many fired.

        A check that fails is counted (``failed``) and tried again at the next tick; the others go on.
        """
        heap, fired, retry = self._heap, 0, []
        while heap and heap[0][0] <= now:
            queued, place_id, name = heapq.heappop(heap)
            home = self._homes.get(place_id)
            if home is None or home.queued.get(name) != queued:
                continue  # superseded by an earlier entry
            del home.queued[name]
            try:
                fired += self._check(home, name, now)
            except Exception as exc:
                if self._failed is None:
                    raise
                self._failed(name, f"household {place_id}", exc, now)
                retry.append((home, name, queued))
        for home, name, queued in retry:
            self._queue(home, name, queued)
        return fired

    def _check(self, home: _Home, name: str, now: float) -> int:
        """One due check of one household rule: fire, or move the check (returns 1 when it fired)."""
        due = home.due.get(name)
        if due is None:
            return 0  # firing, or the rule is gone
        if due > now:
            # Activity moved the check later since this entry was queued: move the entry (lazy deletion).
            self._queue(home, name, due)
            return 0
        rule = next((r for r in home.rules if r.name == name), None)
        if home.away or rule is None:
            return 0  # clear_away reschedules
        place_id = home.place_id
        alert = make_alert(
            name=name,
            rule_type="household",
            severity=rule.severity,
            category=rule.category,
            started_at=due,
            place_id=place_id,
            household=place_id,
            value=home.since,
            text=rule.text,
            correlate=rule.correlate,
        )
        del home.due[name]
        home.firing[name] = alert
        self._emit(alert)
        return 1

    def _schedule(self, home: _Home) -> None:
        home.due.clear()
        for rule in home.rules:
            if rule.name in home.firing:
                continue
            due = home.due[rule.name] = next_due(rule, home.since)
            queued = home.queued.get(rule.name)
            # Only an earlier check needs a new heap entry; a later one is moved when the old entry is reached.
            if queued is None or due < queued:
                self._queue(home, rule.name, due)

    def _queue(self, home: _Home, name: str, due: float) -> None:
        home.queued[name] = due
        heapq.heappush(self._heap, (due, home.place_id, name))

    def _resolve_all(self, home: _Home, now: float) -> None:
        for alert in home.firing.values():
            self._emit(alert.resolved(now))
        home.firing.clear()
