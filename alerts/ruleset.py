"""A checked, immutable set of rules and the per-device view of it (most specific rule of a name wins)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from alerts.describe import described
from alerts.rules import (
    OPS,
    BatteryRule,
    EventRule,
    HouseholdRule,
    InactivityRule,
    OfflineRule,
    Rule,
    ThresholdRule,
    load_yaml,
    parse_rules,
)
from drivers.base import Driver
from hub.errors import InvalidInput

__all__ = ["DeviceRules", "PlaceCheck", "RuleSet", "Threshold"]

PlaceCheck = Callable[[str], bool]
_EMPTY: Mapping[str, tuple[EventRule, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Threshold:
    """A threshold or battery rule reduced to what evaluation needs."""

    rule: ThresholdRule | BatteryRule
    metric: str
    trigger: Callable[[float, float], bool]
    limit: float
    clear: float
    below: bool
    for_s: float

    @classmethod
    def of(cls, rule: ThresholdRule | BatteryRule) -> Threshold:
        """Compile one rule."""
        if isinstance(rule, BatteryRule):
            return cls(rule, "battery", OPS["<"], rule.below, rule.clear, True, rule.for_s)
        return cls(rule, rule.metric, OPS[rule.op], rule.value, rule.clear, rule.op[0] == "<", rule.for_s)

    def cleared(self, value: float) -> bool:
        """Back past the clear level (and no longer beyond the trigger)."""
        past = value >= self.clear if self.below else value <= self.clear
        return past and not self.trigger(value, self.limit)


@dataclass(frozen=True, slots=True)
class DeviceRules:
    """The rules that apply to one device, indexed for the hot path."""

    thresholds: tuple[Threshold, ...]
    events: Mapping[str, tuple[EventRule, ...]]
    clears: Mapping[str, tuple[EventRule, ...]]
    offline: OfflineRule | None
    inactivity: InactivityRule | None
    span: float | None
    names: frozenset[str]


def _bad(where: str, key: str, rule: Rule, problem: str) -> InvalidInput:
    field = f"{where}.{key}" if key else where
    return InvalidInput(f"{field} ({rule.name}): {problem}", field=field)


def _check(rule: Rule, drivers: Mapping[str, Driver], where: str) -> None:
    """Check a rule against the driver of its kind; InvalidInput names the field."""
    driver = drivers.get(rule.kind) if rule.kind is not None else None
    if rule.kind is not None and driver is None:
        raise _bad(where, "kind", rule, f"unknown kind {rule.kind!r} (known: {', '.join(sorted(drivers))})")
    if isinstance(rule, ThresholdRule | EventRule) and driver is None:
        raise _bad(where, "kind", rule, f"a {rule.type} rule needs a kind to check it against")
    if isinstance(rule, ThresholdRule) and driver is not None:
        spec = driver.metrics.get(rule.metric)
        if spec is None:
            have = ", ".join(driver.metrics)
            raise _bad(
                where, "metric", rule, f"kind {driver.kind!r} has no metric {rule.metric!r} (it has {have})"
            )
        if spec.type not in ("int", "float"):
            raise _bad(where, "metric", rule, f"metric {spec.name!r} is not numeric")
        lo = spec.minimum if spec.minimum is not None else float("-inf")
        hi = spec.maximum if spec.maximum is not None else float("inf")
        for key, level in (("value", rule.value), ("clear", rule.clear)):
            if not lo <= level <= hi:
                raise _bad(where, key, rule, f"{key} {level} is outside {spec.name}'s range {lo}..{hi}")
    if isinstance(rule, BatteryRule) and driver is not None and "battery" not in driver.metrics:
        raise _bad(where, "kind", rule, f"kind {driver.kind!r} reports no battery")
    if isinstance(rule, EventRule) and driver is not None:
        for key, event in (("event", rule.event), ("clear_event", rule.clear_event)):
            if event is not None and event not in driver.events:
                have = ", ".join(driver.events)
                raise _bad(
                    where, key, rule, f"kind {driver.kind!r} does not emit {event!r} (it emits {have})"
                )
        if rule.clear_event == rule.event:
            raise _bad(where, "clear_event", rule, "clear_event is the event itself")


class RuleSet:
    """Driver defaults overlaid with configured rules; swap a whole RuleSet to change rules at run time."""

    def __init__(self, rules: Sequence[Rule], drivers: Mapping[str, Driver]) -> None:
        # Each rule with what its alerts say to people and whether a building shares them, decided once here.
        self.rules: tuple[Rule, ...] = tuple(described(rule, drivers) for rule in rules)
        self.drivers = drivers
        self._device_serials = frozenset(r.device for r in self.rules if r.device is not None)
        self._households = tuple(r for r in self.rules if isinstance(r, HouseholdRule))
        self._for_kind: dict[str, tuple[Rule, ...]] = {
            kind: tuple(r for r in self.rules if not isinstance(r, HouseholdRule) and r.kind in (kind, None))
            for kind in drivers
        }
        self._cache: dict[tuple[str, str | None, str | None], DeviceRules] = {}
        self._home_cache: dict[str, tuple[HouseholdRule, ...]] = {}

    @classmethod
    def build(
        cls,
        drivers: Mapping[str, Driver],
        rules: Iterable[Rule] = (),
        *,
        defaults: bool = True,
        source: str = "rules",
        place_check: PlaceCheck | None = None,
    ) -> RuleSet:
        """Check ``rules`` and lay them over the drivers' defaults (same name and scope replaces)."""
        merged: dict[tuple[str, str | None, str | None, str | None], Rule] = {}
        if defaults:
            for driver in drivers.values():
                where = f"drivers.{driver.kind}.default_rules"
                for index, rule in enumerate(
                    parse_rules(list(driver.default_rules), source=where, kind=driver.kind)
                ):
                    _check(rule, drivers, f"{where}[{index}]")
                    merged[rule.scope] = rule
        seen: set[tuple[str, str | None, str | None, str | None]] = set()
        for index, rule in enumerate(rules):
            where = f"{source}[{index}]"
            _check(rule, drivers, where)
            if rule.place is not None and place_check is not None and not place_check(rule.place):
                raise _bad(where, "place", rule, f"unknown place {rule.place!r}")
            if rule.scope in seen:
                raise _bad(where, "", rule, f"rule {rule.name!r} is defined twice for one scope")
            seen.add(rule.scope)
            merged[rule.scope] = rule
        return cls(tuple(merged.values()), drivers)

    @classmethod
    def from_yaml(cls, text: str, drivers: Mapping[str, Driver], **kwargs: object) -> RuleSet:
        """Build from a YAML list of rules (see ``build`` for the keyword arguments)."""
        return cls.build(drivers, load_yaml(text), **kwargs)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.rules)

    def for_device(self, kind: str, path: str | None, serial: str | None) -> DeviceRules:
        """The rules of a device of ``kind`` at place ``path``, cached per (kind, path[, serial])."""
        key = (kind, path, serial if serial in self._device_serials else None)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._compile(*key)
        return found

    def household_rules(self, path: str) -> tuple[HouseholdRule, ...]:
        """The household rules that apply to the household at ``path``."""
        found = self._home_cache.get(path)
        if found is None:
            picked = _winners(r for r in self._households if r.matches("", path, None))
            found = self._home_cache[path] = tuple(r for r in picked if isinstance(r, HouseholdRule))
        return found

    def _compile(self, kind: str, path: str | None, serial: str | None) -> DeviceRules:
        driver = self.drivers.get(kind)
        chosen = _winners(r for r in self._for_kind.get(kind, ()) if r.matches(kind, path, serial))
        if driver is not None and "battery" not in driver.metrics:
            chosen = [r for r in chosen if not isinstance(r, BatteryRule)]
        thresholds = tuple(Threshold.of(r) for r in chosen if isinstance(r, ThresholdRule | BatteryRule))
        events: dict[str, list[EventRule]] = {}
        clears: dict[str, list[EventRule]] = {}
        for rule in chosen:
            if isinstance(rule, EventRule):
                events.setdefault(rule.event, []).append(rule)
                if rule.clear_event is not None:
                    clears.setdefault(rule.clear_event, []).append(rule)
        offline = next((r for r in chosen if isinstance(r, OfflineRule)), None)
        inactivity = next((r for r in chosen if isinstance(r, InactivityRule)), None)
        span = None
        if inactivity is not None:
            beat = driver.heartbeat_interval_s if driver is not None else None
            span = inactivity.interval_s or (beat * inactivity.factor if beat else None)
        return DeviceRules(
            thresholds,
            MappingProxyType({k: tuple(v) for k, v in events.items()}) if events else _EMPTY,
            MappingProxyType({k: tuple(v) for k, v in clears.items()}) if clears else _EMPTY,
            offline,
            inactivity,
            span,
            frozenset(r.name for r in chosen),
        )


def _winners(rules: Iterable[Rule]) -> list[Rule]:
    """Per name, the most specific rule; a disabled winner removes the name."""
    best: dict[str, Rule] = {}
    for rule in rules:
        held = best.get(rule.name)
        if held is None or rule.specificity > held.specificity:
            best[rule.name] = rule
    return [r for r in best.values() if r.enabled]
