"""What each driver declares for people and for correlation: texts in zh-CN and en, building-wide or personal."""

from __future__ import annotations

import re

import pytest

from drivers import DRIVERS
from drivers.base import LANGUAGES, EventSpec, MetricSpec, Text
from drivers.rules import check_rules, check_specs
from hub.errors import InvalidInput

_CJK = re.compile(r"[\u4e00-\u9fff]")
# Hazards a building shares, and emergencies of one person: the two lists, by event.
SHARED = {("smoke", "alarm")}
PERSONAL = {
    ("panic_button", "pressed_long"),
    ("panic_button", "pressed_single"),
    ("panic_button", "fall_detected"),
    ("bodycam", "sos"),
    ("bodycam", "fall"),
}


def _check_text(text: Text, what: str) -> None:
    assert set(text.as_dict()) == set(LANGUAGES), what
    assert _CJK.search(text.zh_cn), f"{what}: no Chinese in {text.zh_cn!r}"
    assert text.en and not _CJK.search(text.en), f"{what}: {text.en!r}"


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_every_event_metric_and_condition_has_a_text_in_both_languages(kind: str) -> None:
    driver = DRIVERS[kind]
    for event in driver.events.values():
        _check_text(event.text, f"{kind} event {event.name}")
    for metric in driver.metrics.values():
        assert metric.text is not None, f"{kind} metric {metric.name}"
        _check_text(metric.text, f"{kind} metric {metric.name}")
    for rule in driver.default_rules:
        if rule["type"] == "event":
            continue  # the event's own text
        texts = rule.get("text")
        assert isinstance(texts, dict), f"{kind} rule {rule['name']} has no text"
        _check_text(Text(texts["zh-CN"], texts["en"]), f"{kind} rule {rule['name']}")


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_every_event_declares_whether_a_building_shares_it(kind: str) -> None:
    for event in DRIVERS[kind].events.values():
        assert event.correlate in ("building", "none")
        if (kind, event.name) in SHARED:
            assert event.correlate == "building", event.name
        if (kind, event.name) in PERSONAL or event.category in ("panic", "sos", "fall"):
            assert event.correlate == "none", event.name


def test_declarations_without_texts_or_with_half_of_them_are_refused() -> None:
    good = EventSpec("a", "major", "fire", False, text=Text("甲", "a thing"), correlate="building")
    assert check_specs({}, {"a": good}) == []
    half = EventSpec("a", "major", "fire", False, text=Text("", "a thing"), correlate="building")
    assert any("text" in p for p in check_specs({}, {"a": half}))
    odd = EventSpec("a", "major", "fire", False, text=Text("甲", "a thing"), correlate="street")  # type: ignore[arg-type]
    assert any("correlate" in p for p in check_specs({}, {"a": odd}))
    nameless = MetricSpec("level", "%", "int", 0, 100)
    assert any("text" in p for p in check_specs({"level": nameless}, {}))
    rule = {
        "name": "full",
        "type": "threshold",
        "metric": "level",
        "op": ">",
        "value": 90,
        "clear": 80,
        "for_s": 0,
        "severity": "minor",
        "category": "fault",
    }
    named = MetricSpec("level", "%", "int", 0, 100, text=Text("液位", "level"))
    assert any("text" in p for p in check_rules((rule,), {"level": named}, {}))
    with_text = rule | {"text": {"zh-CN": "液位过高", "en": "level high"}}
    assert check_rules((with_text,), {"level": named}, {}) == []
    with pytest.raises(InvalidInput):
        Text.of({"zh-CN": "液位过高"})
