"""A rule's words for people and its correlation: declared, or made from the rule; both languages."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from alerts.cases import CASE_CATEGORIES
from alerts.categories import parse_table
from alerts.rules import parse_rules
from alerts.ruleset import RuleSet
from drivers import DRIVERS
from hub.errors import InvalidInput


def _one(raw: dict[str, Any]) -> Any:
    return RuleSet.build(DRIVERS, parse_rules([raw]), defaults=False).rules[0]


@pytest.mark.parametrize(
    ("raw", "zh", "en"),
    [
        (
            {
                "name": "hot",
                "type": "threshold",
                "kind": "smoke",
                "metric": "temperature",
                "op": ">",
                "value": 40,
                "clear": 35,
                "severity": "major",
                "category": "fire",
            },
            "温度高于40°C",
            "Temperature above 40 °C",
        ),
        (
            {
                "name": "weak",
                "type": "threshold",
                "kind": "door",
                "metric": "rssi",
                "op": "<=",
                "value": -120,
                "clear": -110,
                "severity": "minor",
                "category": "fault",
            },
            "信号强度不高于-120dBm",
            "Signal strength at or below -120 dBm",
        ),
        (
            {
                "name": "full",
                "type": "threshold",
                "kind": "bodycam",
                "metric": "storage",
                "op": ">=",
                "value": 95.5,
                "clear": 90,
                "severity": "minor",
                "category": "fault",
            },
            "存储占用不低于95.5%",
            "Storage used at or above 95.5%",
        ),
        ({"name": "low", "type": "battery", "below": 10, "clear": 20}, "电量低于10%", "Battery below 10%"),
        ({"name": "gone", "type": "offline", "for_s": 60, "severity": "major"}, "设备离线", "Device offline"),
        (
            {"name": "quiet", "type": "inactivity", "severity": "major"},
            "设备超时未上报",
            "Device has not reported in time",
        ),
        (
            {
                "name": "morning",
                "type": "household",
                "severity": "major",
                "window": {"start": "07:00", "end": "10:00"},
            },
            "07:00至10:00无活动",
            "No activity between 07:00 and 10:00",
        ),
        (
            {"name": "idle", "type": "household", "severity": "major", "idle_hours": 6},
            "白天6小时无活动",
            "No activity for 6 h in the daytime",
        ),
        (
            {
                "name": "held",
                "type": "event",
                "kind": "panic_button",
                "event": "pressed_long",
                "severity": "critical",
                "category": "panic",
            },
            "紧急按钮长按求助",
            "Panic button held",
        ),
        (
            {
                "name": "kitchen",
                "type": "threshold",
                "kind": "smoke",
                "metric": "temperature",
                "op": ">",
                "value": 50,
                "clear": 45,
                "severity": "major",
                "category": "fire",
                "description": "厨房温度",
            },
            "厨房温度",
            "厨房温度",
        ),
        (
            {
                "name": "own",
                "type": "event",
                "kind": "door",
                "event": "forced",
                "severity": "critical",
                "category": "intrusion",
                "text": {"zh-CN": "撬门", "en": "Break-in"},
            },
            "撬门",
            "Break-in",
        ),
    ],
)
def test_text_is_declared_or_made_from_the_rule(raw: dict[str, Any], zh: str, en: str) -> None:
    rule = _one(raw)
    assert rule.text == {"zh-CN": zh, "en": en}


def test_correlation_comes_from_the_rule_then_the_event_then_the_category() -> None:
    smoke = {
        "name": "s",
        "type": "event",
        "kind": "smoke",
        "event": "alarm",
        "severity": "critical",
        "category": "fire",
    }
    panic = {
        "name": "p",
        "type": "event",
        "kind": "panic_button",
        "event": "pressed_long",
        "severity": "critical",
        "category": "panic",
    }
    heat = {
        "name": "h",
        "type": "threshold",
        "kind": "smoke",
        "metric": "temperature",
        "op": ">",
        "value": 50,
        "clear": 45,
        "severity": "critical",
        "category": "fire",
    }
    home = {"name": "q", "type": "household", "severity": "major", "idle_hours": 6}
    assert _one(smoke).correlate == "building" and _one(panic).correlate == "none"
    assert _one(heat).correlate == "building" and _one(home).correlate == "none"
    assert _one(smoke | {"correlate": "none"}).correlate == "none"
    # The drivers' defaults: every rule of the built set carries both.
    for rule in RuleSet.build(DRIVERS).rules:
        assert (
            rule.text is not None
            and set(rule.text) == {"zh-CN", "en"}
            and rule.correlate in ("building", "none")
        )


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[]", "categories.yaml"),
        ("fire: {correlate: building, name: {zh-CN: 火警, en: Fire}}", "categories.yaml"),
    ],
)
def test_a_broken_category_table_is_one_clear_error(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_table(text)
    assert info.value.field == field


def test_a_category_without_both_names_or_with_an_unknown_correlation_is_refused() -> None:
    rows = {k: {"correlate": "none", "name": {"zh-CN": "甲", "en": "a"}} for k in CASE_CATEGORIES}
    for broken, field in (
        ({"correlate": "street", "name": {"zh-CN": "火警", "en": "Fire"}}, "categories.yaml.fire"),
        ({"correlate": "building", "name": {"en": "Fire"}}, "categories.yaml.fire"),
    ):
        with pytest.raises(InvalidInput) as info:
            parse_table(yaml.safe_dump(rows | {"fire": broken}, allow_unicode=True, sort_keys=False))
        assert info.value.field == field
    assert parse_table(yaml.safe_dump(rows, allow_unicode=True, sort_keys=False))["fire"].correlate == "none"
