"""What a rule's alert means to people, and whether a building shares it: declared, or made from the rule.

A rule's text is, in this order: its own ``text``; its ``description`` (one string, for both languages); its
event's text as the driver declares it; words made from the rule below (a threshold from the metric's name);
the category's name. Its correlation is its own ``correlate``, else its event's, else its category's.
"""

from __future__ import annotations

from collections.abc import Mapping

from alerts.categories import categories, correlate_of
from alerts.rules import (
    BatteryRule,
    EventRule,
    HouseholdRule,
    InactivityRule,
    OfflineRule,
    Rule,
    ThresholdRule,
)
from drivers.base import Correlate, Driver, Text

__all__ = ["PHRASES", "described", "rule_correlate", "rule_text"]

# The words made from a rule, (zh-CN, en): the one place to change or translate them.
PHRASES: Mapping[str, tuple[str, str]] = {
    ">": ("{metric}高于{value}{unit}", "{Metric} above {value}{unit}"),
    ">=": ("{metric}不低于{value}{unit}", "{Metric} at or above {value}{unit}"),
    "<": ("{metric}低于{value}{unit}", "{Metric} below {value}{unit}"),
    "<=": ("{metric}不高于{value}{unit}", "{Metric} at or below {value}{unit}"),
    "battery": ("电量低于{below}%", "Battery below {below}%"),
    "inactivity": ("设备超时未上报", "Device has not reported in time"),
    "offline": ("设备离线", "Device offline"),
    "window": ("{start}至{end}无活动", "No activity between {start} and {end}"),
    "idle": ("白天{hours}小时无活动", "No activity for {hours} h in the daytime"),
}


def _phrase(key: str, **values: str) -> Text:
    zh, en = PHRASES[key]
    return Text(zh.format(**values), en.format(**values))


def _number(value: float) -> str:
    return f"{value:g}"


def _threshold(rule: ThresholdRule, driver: Driver | None) -> Text | None:
    spec = None if driver is None else driver.metrics.get(rule.metric)
    if spec is None or spec.text is None:
        return None
    unit = spec.unit
    # English puts a space before a unit ("40 °C", "-120 dBm"), not before "%" or an angle's "°".
    zh_unit, en_unit = unit, (f" {unit}" if unit and unit not in ("%", "°") else unit)
    zh, en = PHRASES[rule.op]
    value = _number(rule.value)
    return Text(
        zh.format(metric=spec.text.zh_cn, value=value, unit=zh_unit),
        en.format(Metric=spec.text.en[:1].upper() + spec.text.en[1:], value=value, unit=en_unit),
    )


def _made(rule: Rule, driver: Driver | None) -> Text | None:
    if isinstance(rule, EventRule):
        event = None if driver is None else driver.events.get(rule.event)
        return None if event is None else event.text
    if isinstance(rule, ThresholdRule):
        return _threshold(rule, driver)
    if isinstance(rule, BatteryRule):
        return _phrase("battery", below=_number(rule.below))
    if isinstance(rule, InactivityRule):
        return _phrase("inactivity")
    if isinstance(rule, OfflineRule):
        return _phrase("offline")
    if isinstance(rule, HouseholdRule):
        if rule.window is not None:
            return _phrase("window", start=f"{rule.window.start:%H:%M}", end=f"{rule.window.end:%H:%M}")
        return _phrase("idle", hours=_number(rule.idle_hours or 0))
    return None


def rule_text(rule: Rule, drivers: Mapping[str, Driver]) -> Text:
    """What the rule's alert says to people, in zh-CN and en."""
    if rule.text is not None:
        return Text.of(rule.text)
    if rule.description:
        return Text(rule.description, rule.description)
    made = _made(rule, drivers.get(rule.kind) if rule.kind is not None else None)
    if made is not None:
        return made
    return categories()[rule.category].name


def rule_correlate(rule: Rule, drivers: Mapping[str, Driver]) -> Correlate:
    """Whether the rule's alerts of one building fold into one case."""
    if rule.correlate is not None:
        return rule.correlate
    if isinstance(rule, EventRule) and rule.kind is not None:
        event = drivers[rule.kind].events.get(rule.event) if rule.kind in drivers else None
        if event is not None:
            return event.correlate
    return correlate_of(rule.category)


def described(rule: Rule, drivers: Mapping[str, Driver]) -> Rule:
    """The rule with its text and correlation filled in (what its alerts carry)."""
    update = {"text": rule_text(rule, drivers).as_dict(), "correlate": rule_correlate(rule, drivers)}
    return rule.model_copy(update=update)
