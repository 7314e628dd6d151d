"""The shape of default rules and the checks a driver declaration must pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.base import EventSpec, MetricSpec

__all__ = [
    "CATEGORIES",
    "CORRELATES",
    "OPS",
    "RULE_KEYS",
    "SEVERITIES",
    "check_rules",
    "check_specs",
    "check_text",
]

SEVERITIES = ("critical", "major", "minor", "info")
CATEGORIES = ("fire", "panic", "fall", "sos", "intrusion", "tamper", "fault", "battery", "activity", "test")
OPS = ("<", "<=", ">", ">=")
CORRELATES = ("building", "none")
_LANGUAGES = ("zh-CN", "en")  # drivers.base.LANGUAGES (base imports this module)
_COMMON = frozenset({"name", "type", "severity", "category"})
# Any rule may say what it means to people and whether a building shares it.
_DECLARED = frozenset({"text", "correlate"})
# type -> (required keys besides the common ones, optional keys)
RULE_KEYS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    "event": (frozenset({"event"}), frozenset({"clear_event"})),
    "threshold": (frozenset({"metric", "op", "value", "clear", "for_s"}), frozenset()),
    "inactivity": (frozenset({"factor"}), frozenset()),
}


def _check_threshold(rule: Mapping[str, Any], metrics: Mapping[str, MetricSpec]) -> list[str]:
    spec = metrics.get(rule["metric"])
    if spec is None:
        return [f"unknown metric {rule['metric']!r}"]
    if spec.type not in ("int", "float"):
        return [f"threshold on non-numeric metric {spec.name!r}"]
    op, value, clear = rule["op"], rule["value"], rule["clear"]
    if op not in OPS:
        return [f"op {op!r} not in {OPS}"]
    problems = []
    lo = spec.minimum if spec.minimum is not None else float("-inf")
    hi = spec.maximum if spec.maximum is not None else float("inf")
    if not (lo <= value <= hi and lo <= clear <= hi):
        problems.append("value or clear outside the metric's range")
    # The clear level sits on the far side of the trigger, or the alert would flap.
    if (op in ("<", "<=") and clear < value) or (op in (">", ">=") and clear > value):
        problems.append(f"clear {clear} is on the wrong side of {op} {value}")
    if not (isinstance(rule["for_s"], int | float) and rule["for_s"] >= 0):
        problems.append("for_s must be a number >= 0")
    return problems


def _check_one(
    rule: Mapping[str, Any], metrics: Mapping[str, MetricSpec], events: Mapping[str, EventSpec]
) -> list[str]:
    shape = RULE_KEYS.get(rule.get("type", ""))
    if shape is None:
        return [f"unknown rule type {rule.get('type')!r}"]
    required, optional = shape
    keys = set(rule)
    problems = [f"missing {k!r}" for k in sorted((_COMMON | required) - keys)]
    problems += [f"unexpected {k!r}" for k in sorted(keys - _COMMON - _DECLARED - required - optional)]
    if problems:
        return problems
    # An event rule reads as its event; every other condition needs its own words.
    if "text" in rule or rule["type"] != "event":
        problems += check_text(rule.get("text"))
    if rule.get("correlate", "none") not in CORRELATES:
        problems.append(f"correlate {rule['correlate']!r} not in {CORRELATES}")
    if rule["severity"] not in SEVERITIES:
        problems.append(f"severity {rule['severity']!r} not in {SEVERITIES}")
    if rule["category"] not in CATEGORIES:
        problems.append(f"category {rule['category']!r} not in {CATEGORIES}")
    if rule["type"] == "event":
        for key in ("event", "clear_event"):
            if key in rule and rule[key] not in events:
                problems.append(f"unknown event {rule[key]!r}")
        spec = events.get(rule["event"])
        if spec is not None and (spec.severity, spec.category) != (rule["severity"], rule["category"]):
            problems.append(f"severity/category differ from event {spec.name!r}")
    elif rule["type"] == "threshold":
        problems += _check_threshold(rule, metrics)
    elif not (isinstance(rule["factor"], int | float) and rule["factor"] >= 1):
        problems.append("factor must be a number >= 1")
    return problems


def check_rules(
    rules: tuple[Mapping[str, Any], ...], metrics: Mapping[str, MetricSpec], events: Mapping[str, EventSpec]
) -> list[str]:
    """Problems with a driver's default rules: shape, and names the driver does not declare."""
    problems: list[str] = []
    names: set[str] = set()
    for index, rule in enumerate(rules):
        name = rule.get("name")
        if name in names:
            problems.append(f"rule {index}: duplicate name {name!r}")
        names.add(str(name))
        problems += [f"rule {index} ({name}): {p}" for p in _check_one(rule, metrics, events)]
    return problems


def check_text(text: object) -> list[str]:
    """Problems with a declared text: it must be ``{"zh-CN": …, "en": …}``, both non-empty."""
    if (
        isinstance(text, Mapping)
        and set(text) == set(_LANGUAGES)
        and all(isinstance(v, str) and v.strip() for v in text.values())
    ):
        return []
    return [f"text must give {' and '.join(_LANGUAGES)}, each non-empty"]


def _text_of(spec: object) -> object:
    text = getattr(spec, "text", None)
    return None if text is None else {"zh-CN": text.zh_cn, "en": text.en}


def check_specs(metrics: Mapping[str, MetricSpec], events: Mapping[str, EventSpec]) -> list[str]:
    """Problems with metric and event declarations."""
    problems = [f"metric key {k!r} != name {s.name!r}" for k, s in metrics.items() if k != s.name]
    problems += [f"event key {k!r} != name {s.name!r}" for k, s in events.items() if k != s.name]
    # Bounds are what reject NaN and infinities, so every number needs both.
    problems += [
        f"metric {k!r} needs a minimum and a maximum"
        for k, s in metrics.items()
        if s.type in ("int", "float") and (s.minimum is None or s.maximum is None)
    ]
    problems += [
        f"event {k!r}: severity {s.severity!r}" for k, s in events.items() if s.severity not in SEVERITIES
    ]
    problems += [
        f"event {k!r}: category {s.category!r}" for k, s in events.items() if s.category not in CATEGORIES
    ]
    problems += [
        f"event {k!r}: correlate {s.correlate!r} not in {CORRELATES}"
        for k, s in events.items()
        if s.correlate not in CORRELATES
    ]
    # What people read: every event and metric has its words in each language.
    problems += [f"event {k!r}: {p}" for k, s in events.items() for p in check_text(_text_of(s))]
    problems += [f"metric {k!r}: {p}" for k, s in metrics.items() for p in check_text(_text_of(s))]
    return problems
