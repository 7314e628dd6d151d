"""The rule engine: a cheap, non-blocking hook on the ingest path plus a ``tick`` that advances timers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

from alerts.alert import Alert, AlertSink
from alerts.conditions import Conditions
from alerts.deadman import DeadmanTracker
from alerts.failures import ENGINE, RuleFailures
from alerts.household import HouseholdWatch
from alerts.ruleset import DeviceRules, RuleSet
from drivers.base import Reading
from hub.errors import NotFound
from hub.ingest.directory import DeviceEntry
from hub.ingest.state import LiveStatus

__all__ = ["HOUSEHOLD_DEPTH", "RuleEngine"]

log = logging.getLogger(__name__)
# district/street/community/grid/building/household: a household's path holds six ids.
HOUSEHOLD_DEPTH = 6


class RuleEngine:
    """Evaluates rules per reading, offline report and tick; emits firing/resolved alerts to ``sink``."""

    def __init__(
        self,
        rules: RuleSet,
        sink: AlertSink,
        *,
        places: Mapping[int, str] | None = None,
        devices: Callable[[int], DeviceEntry | None] | None = None,
        schedule: Literal["wheel", "heap"] = "wheel",
        failures: RuleFailures | None = None,
    ) -> None:
        self._rules = rules
        self._sink = sink
        # Failed evaluations, per rule; one failure costs one evaluation, not the reading or the tick.
        self.failures = failures if failures is not None else RuleFailures()
        self.last_tick_failures = 0
        self._places: dict[int, str] = dict(places or {})
        self._lookup = devices
        self._seen: dict[int, DeviceEntry] = {}  # only when no directory lookup is given
        self._watched: set[int] = set()  # places already checked for being a watched household
        self.conditions = Conditions(self._emit, self.failures)
        self.deadman = DeadmanTracker(schedule)
        self.households = HouseholdWatch(rules.household_rules, self._emit, self.failures)
        self.readings = 0
        self.emitted = 0
        self.sink_errors = 0

    @property
    def rules(self) -> RuleSet:
        """The rule set in force."""
        return self._rules

    def __call__(self, device: DeviceEntry, reading: Reading, now: float) -> None:
        """The pipeline's ReadingHook."""
        self.on_reading(device, reading, now)

    def on_reading(self, device: DeviceEntry, reading: Reading, now: float) -> None:
        """Evaluate one accepted reading: no I/O, alerts go to the sink."""
        self.readings += 1
        if self._lookup is None:
            self._seen[device.id] = device
        try:
            rules = self._device_rules(device)
        except Exception as exc:
            self.failures(ENGINE, device.serial, exc, now)
            return
        conditions = self.conditions
        if rules.span is not None and self.deadman.touch(device.id, now + rules.span):
            assert rules.inactivity is not None
            conditions.resolve(rules.inactivity.name, device.id, now)
        if conditions.offline:
            conditions.back_online(device.id, now)
        if rules.thresholds:
            conditions.thresholds(rules.thresholds, device, reading.metrics, now)
        if reading.events and (rules.events or rules.clears):
            conditions.events(rules, device, reading.events, now)
        place_id = device.place_id
        if place_id is not None and (reading.activity or place_id not in self._watched):
            try:
                self._household(place_id, now, reading.activity)
            except Exception as exc:
                self.failures(ENGINE, f"household {place_id}", exc, now)

    def on_offline(self, device: DeviceEntry, now: float) -> None:
        """The device went offline (last will, lost session): open its offline alert, after any grace."""
        rule = None
        try:
            rule = self._device_rules(device).offline
            if rule is not None:
                self.conditions.went_offline(rule, device, now)
        except Exception as exc:
            self.failures(ENGINE if rule is None else rule.name, device.serial, exc, now)

    def tick(self, now: float) -> int:
        """Advance for-durations, deadman deadlines and household windows; returns alerts fired.

        Each evaluation stands alone: one that fails is counted in ``failures`` (``last_tick_failures`` for this
        tick) and tried again at the next tick, and every other device and household is still evaluated.
        """
        before = self.failures.total
        fired = self.conditions.due(now) if self.conditions.pending else 0
        for device_id, deadline in self.deadman.expire(now):
            fired += self._silent(device_id, deadline, now)
        fired += self.households.tick(now)
        self.last_tick_failures = self.failures.total - before
        return fired

    def _silent(self, device_id: int, deadline: float, now: float) -> int:
        """Fire one silent device's inactivity alert (1), or forget it (0); a failure is retried next tick."""
        name, subject = ENGINE, str(device_id)
        try:
            device = self._device(device_id)
            subject = device.serial if device is not None else subject
            rules = self._device_rules(device) if device is not None else None
            if device is None or rules is None or rules.inactivity is None or rules.span is None:
                self.deadman.forget(device_id)
                return 0
            name = rules.inactivity.name
            self.conditions.fire(rules.inactivity, device, deadline, deadline - rules.span)
        except Exception as exc:
            self.deadman.retry(device_id, deadline)
            self.failures(name, subject, exc, now)
            return 0
        return 1

    def rearm(self, devices: Iterable[DeviceEntry], statuses: Iterable[LiveStatus], now: float) -> int:
        """Rebuild deadlines after a start from stored last_seen/last_activity; returns devices armed."""
        by_id = {status.device_id: status for status in statuses}
        self.deadman.start(now)
        homes: dict[int, float | None] = {}
        armed = 0
        for device in devices:
            if not device.accepting:
                continue
            if self._lookup is None:
                self._seen[device.id] = device
            status = by_id.get(device.id)
            try:
                armed += self._rearm_one(device, status, homes, now)
            except Exception as exc:  # one device that cannot be armed must not stop the start
                self.failures(ENGINE, device.serial, exc, now)
        for place_id, active in homes.items():
            # A household never seen active is counted from the start, not from the epoch.
            try:
                self._household(place_id, now if active is None else active, False)
            except Exception as exc:
                self.failures(ENGINE, f"household {place_id}", exc, now)
        return armed

    def _rearm_one(
        self, device: DeviceEntry, status: LiveStatus | None, homes: dict[int, float | None], now: float
    ) -> int:
        armed = 0
        seen = status.last_seen if status is not None and status.last_seen is not None else now
        rules = self._device_rules(device)
        if rules.span is not None:
            # From the stored last uplink, so a device silent since before the restart fires on time.
            self.deadman.arm(device.id, seen + rules.span)
            armed += 1
        if device.place_id is not None:
            active = status.last_activity if status is not None else None
            known = homes.get(device.place_id)
            homes[device.place_id] = active if known is None else max(known, active or known)
        if status is not None and status.last_seen is not None and not status.online:
            self.on_offline(device, now)
        return armed

    def swap(self, rules: RuleSet, now: float) -> None:
        """Put a new rule set in force; alerts of rules that no longer apply resolve at ``now``."""
        old, self._rules = self._rules, rules
        for device_id in list(self.deadman.keys()):
            try:
                self._retime(device_id, old)
            except Exception as exc:  # this device keeps its deadline; the others move on
                self.failures(ENGINE, str(device_id), exc, now)
        for name, device_id in list(self.conditions.firing) + list(self.conditions.pending):
            try:
                device = self._device(device_id)
                if device is None or name not in self._device_rules(device).names:
                    self.conditions.drop(name, device_id, now)
            except Exception as exc:
                self.failures(name, str(device_id), exc, now)
        self.households.reload(rules.household_rules, now)

    def _retime(self, device_id: int, old: RuleSet) -> None:
        device = self._device(device_id)
        if device is None:
            return
        was, will = self._device_rules(device, old).span, self._device_rules(device).span
        deadline = self.deadman.deadline(device_id)
        if will is None:
            self.deadman.forget(device_id)
        elif was is not None and deadline is not None and will != was:
            self.deadman.retime(device_id, deadline - was + will)

    def knows_place(self, place_id: int) -> bool:
        """Whether the place map has ``place_id`` (a newer place needs ``set_places`` first)."""
        return place_id in self._places

    def set_places(self, places: Mapping[int, str]) -> None:
        """Replace the place id -> path map (after a place is created or moved)."""
        self._places = dict(places)
        self._watched.clear()

    def set_away(self, place_id: int, now: float) -> None:
        """Put a household in away mode: its activity alerts resolve and stay quiet until cleared."""
        path = self._places.get(place_id)
        if path is None:
            raise NotFound(f"unknown place {place_id}", field="place_id")
        self.households.set_away(place_id, path, now)

    def clear_away(self, place_id: int, now: float) -> None:
        """End away mode; the household is counted as active from ``now``."""
        self.households.clear_away(place_id, now)

    def active(self) -> list[Alert]:
        """Every firing alert that is kept (threshold, event with clear_event, offline, inactivity, household)."""
        return [*self.conditions.firing.values(), *self.households.firing()]

    def stats(self) -> dict[str, float]:
        """Counters and gauges for /metrics."""
        out: dict[str, float] = {
            "readings": self.readings,
            "evaluation_failures": self.failures.total,
            "emitted": self.emitted,
            "sink_errors": self.sink_errors,
            "firing": len(self.conditions.firing),
            "pending": len(self.conditions.pending),
            "households": len(self.households),
        }
        out.update({f"deadman_{k}": v for k, v in self.deadman.stats().items()})
        return out

    def _device(self, device_id: int) -> DeviceEntry | None:
        return self._seen.get(device_id) if self._lookup is None else self._lookup(device_id)

    def _device_rules(self, device: DeviceEntry, rules: RuleSet | None = None) -> DeviceRules:
        path = self._places.get(device.place_id) if device.place_id is not None else None
        return (rules or self._rules).for_device(device.kind, path, device.serial)

    def _household(self, place_id: int, now: float, active: bool) -> None:
        path = self._places.get(place_id)
        self._watched.add(place_id)
        if path is None or path.count("/") - 1 != HOUSEHOLD_DEPTH or not self._rules.household_rules(path):
            return
        if active:
            self.households.activity(place_id, path, now)
        else:
            self.households.watch(place_id, path, now)

    def _emit(self, alert: Alert) -> None:
        self.emitted += 1
        try:
            self._sink(alert)
        except Exception:
            self.sink_errors += 1
            log.exception("alert sink failed for %s %s", alert.name, alert.fingerprint)
