"""Per (rule, device) state of kept alerts: firing, pending for-durations, cooldowns, offline reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from alerts.alert import Alert, AlertSink, make_alert
from alerts.failures import FailureSink
from alerts.rules import BatteryRule, EventRule, InactivityRule, OfflineRule, ThresholdRule
from alerts.ruleset import DeviceRules, Threshold
from drivers.base import Value
from hub.ingest.directory import DeviceEntry

__all__ = ["Conditions", "Pending"]

Fired = ThresholdRule | BatteryRule | EventRule | OfflineRule | InactivityRule


def _reraise(rule: str, subject: str | None, exc: Exception, now: float) -> None:
    raise exc


@dataclass(slots=True)
class Pending:
    """A condition that holds but has not held for its rule's ``for_s`` yet."""

    due: float
    device: DeviceEntry
    rule: ThresholdRule | BatteryRule | OfflineRule
    value: float | None


class Conditions:
    """The device-level alert state the engine keeps between readings; emits through ``emit``."""

    def __init__(self, emit: AlertSink, failed: FailureSink | None = None) -> None:
        self._emit = emit
        self._failed = failed or _reraise
        self.firing: dict[tuple[str, int], Alert] = {}
        self.pending: dict[tuple[str, int], Pending] = {}
        self.last_event: dict[tuple[str, int], float] = {}
        self.offline: dict[int, str] = {}  # device id -> offline rule name, pending or firing
        self.hot: set[int] = set()  # devices that may hold threshold state (firing or pending)

    def went_offline(self, rule: OfflineRule, device: DeviceEntry, now: float) -> None:
        """Open the offline alert, or start its grace period."""
        if device.id in self.offline:
            return
        self.offline[device.id] = rule.name
        if rule.for_s > 0:
            self.pending[(rule.name, device.id)] = Pending(now + rule.for_s, device, rule, None)
        else:
            self.fire(rule, device, now, None)

    def back_online(self, device_id: int, now: float) -> None:
        """An uplink ends the device's offline alert or grace period."""
        name = self.offline.pop(device_id, None)
        if name is not None:
            self.pending.pop((name, device_id), None)
            self.resolve(name, device_id, now)

    def due(self, now: float) -> int:
        """Fire every pending condition whose for-duration has passed; returns how many fired.

        One that fails stays pending and is tried again at the next tick.
        """
        ready = [(k, p) for k, p in self.pending.items() if p.due <= now]
        fired = 0
        for key, pending in ready:
            try:
                self.fire(pending.rule, pending.device, pending.due, pending.value)
            except Exception as exc:
                self._failed(pending.rule.name, pending.device.serial, exc, now)
                continue
            self.pending.pop(key, None)
            fired += 1
        return fired

    def drop(self, name: str, device_id: int, now: float) -> None:
        """Forget a rule's state for a device (the rule no longer applies): resolve, unpend."""
        self.pending.pop((name, device_id), None)
        self.resolve(name, device_id, now)
        if self.offline.get(device_id) == name:
            del self.offline[device_id]

    def thresholds(
        self, thresholds: tuple[Threshold, ...], device: DeviceEntry, metrics: Mapping[str, Value], now: float
    ) -> None:
        if device.id not in self.hot:
            # The quiet path: no threshold state for this device, so only a trigger can change anything.
            for threshold in thresholds:
                value = metrics.get(threshold.metric)
                try:  # one failing rule costs its own evaluation only (free in 3.11 when nothing raises)
                    if (
                        value is not None
                        and not isinstance(value, bool | str)
                        and threshold.trigger(value, threshold.limit)
                    ):
                        self.hot.add(device.id)
                        self.threshold(threshold, device, value, now)
                except Exception as exc:
                    self._failed(threshold.rule.name, device.serial, exc, now)
            return
        held = False
        for threshold in thresholds:
            value = metrics.get(threshold.metric)
            key = (threshold.rule.name, device.id)
            if value is not None and not isinstance(value, bool | str):
                try:
                    self.threshold(threshold, device, value, now)
                except Exception as exc:
                    self._failed(threshold.rule.name, device.serial, exc, now)
            held = held or key in self.firing or key in self.pending
        if not held:
            self.hot.discard(device.id)

    def threshold(self, threshold: Threshold, device: DeviceEntry, value: float, now: float) -> None:
        key = (threshold.rule.name, device.id)
        alert = self.firing.get(key)
        if alert is not None:
            # Hysteresis: between the trigger and the clear level a firing alert stays firing.
            if threshold.cleared(value):
                del self.firing[key]
                self._emit(alert.resolved(now, value))
            return
        if not threshold.trigger(value, threshold.limit):
            self.pending.pop(key, None)  # the for-duration starts again next time
            return
        if threshold.for_s <= 0:
            self.fire(threshold.rule, device, now, value)
            return
        pending = self.pending.get(key)
        if pending is None:
            self.pending[key] = Pending(now + threshold.for_s, device, threshold.rule, value)
        elif pending.due <= now:
            del self.pending[key]
            self.fire(threshold.rule, device, pending.due, value)
        else:
            pending.value = value

    def events(self, rules: DeviceRules, device: DeviceEntry, events: tuple[str, ...], now: float) -> None:
        for event in events:
            for rule in rules.clears.get(event, ()):
                try:
                    self.resolve(rule.name, device.id, now)
                except Exception as exc:
                    self._failed(rule.name, device.serial, exc, now)
            for rule in rules.events.get(event, ()):
                try:
                    self.event(rule, device, event, now)
                except Exception as exc:
                    self._failed(rule.name, device.serial, exc, now)

    def event(self, rule: EventRule, device: DeviceEntry, event: str, now: float) -> None:
        """One event rule for one reported event."""
        key = (rule.name, device.id)
        if rule.clear_event is not None:
            if key not in self.firing:
                self.fire(rule, device, now, event)
            return
        if rule.cooldown_s > 0:
            last = self.last_event.get(key)
            if last is not None and now - last < rule.cooldown_s:
                return
            self.last_event[key] = now
        self.fire(rule, device, now, event, keep=False)  # a one-shot: the case closes it

    def fire(
        self, rule: Fired, device: DeviceEntry, at: float, value: float | str | None, *, keep: bool = True
    ) -> None:
        alert = make_alert(
            name=rule.name,
            rule_type=rule.type,
            severity=rule.severity,
            category=rule.category,
            started_at=at,
            device_id=device.id,
            device_serial=device.serial,
            kind=device.kind,
            place_id=device.place_id,
            value=value,
            text=rule.text,
            correlate=rule.correlate,
        )
        if keep:
            self.firing[(rule.name, device.id)] = alert
        self._emit(alert)

    def resolve(self, name: str, device_id: int, now: float) -> None:
        alert = self.firing.pop((name, device_id), None)
        if alert is not None:
            self._emit(alert.resolved(now))
