"""Driver declarations: default rules name only what the driver declares, registry, and purity."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

import drivers
from drivers import ALL, DRIVERS, get_driver
from drivers.base import DecodeMeta, MetricSpec, Text
from drivers.rules import CATEGORIES, RULE_KEYS, check_rules, check_specs
from hub.errors import InvalidInput, NotFound


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_default_rules_name_only_declared_metrics_and_events(kind: str) -> None:
    driver = get_driver(kind)
    assert driver.default_rules
    for rule in driver.default_rules:
        assert set(rule) >= {"name", "type", "severity", "category"}
        assert rule["type"] in RULE_KEYS
        if rule["type"] == "event":
            assert rule["event"] in driver.events
            assert rule.get("clear_event", rule["event"]) in driver.events
        elif rule["type"] == "threshold":
            assert driver.metrics[rule["metric"]].type in ("int", "float")
        assert rule["category"] in CATEGORIES
    assert check_rules(driver.default_rules, driver.metrics, driver.events) == []
    # Every critical event opens a case by default.
    critical = {e.name for e in driver.events.values() if e.severity == "critical"}
    assert critical <= {r["event"] for r in driver.default_rules if r["type"] == "event"}
    assert sum(r["type"] == "inactivity" for r in driver.default_rules) == 1
    assert driver.heartbeat_interval_s > 0


def test_rule_checker_finds_what_is_wrong() -> None:
    smoke = get_driver("smoke")
    rules = (
        {"name": "a", "type": "event", "event": "explosion", "severity": "critical", "category": "fire"},
        {
            "name": "a",
            "type": "threshold",
            "metric": "humidity",
            "op": "<",
            "value": 1,
            "clear": 2,
            "for_s": 0,
            "severity": "minor",
            "category": "battery",
        },
        {
            "name": "c",
            "type": "threshold",
            "metric": "battery",
            "op": "<",
            "value": 15,
            "clear": 10,
            "for_s": 0,
            "severity": "minor",
            "category": "battery",
        },
        {"name": "d", "type": "inactivity", "factor": 2.5, "severity": "urgent", "category": "weather"},
        {"name": "e", "type": "inactivity"},
        {"name": "f", "type": "deadman", "severity": "major", "category": "fault"},
        {"name": "g", "type": "event", "event": "alarm", "severity": "minor", "category": "fire"},
    )
    problems = "\n".join(check_rules(rules, smoke.metrics, smoke.events))
    for needle in (
        "unknown event 'explosion'",
        "duplicate name 'a'",
        "unknown metric 'humidity'",
        "wrong side",
        "severity 'urgent'",
        "category 'weather'",
        "missing 'factor'",
        "unknown rule type 'deadman'",
        "differ from event 'alarm'",
    ):
        assert needle in problems


def test_a_driver_with_a_bad_rule_cannot_be_built() -> None:
    smoke = get_driver("smoke")
    bad = (
        {
            "name": "x",
            "type": "threshold",
            "metric": "humidity",
            "op": ">",
            "value": 1,
            "clear": 0,
            "for_s": 0,
            "severity": "minor",
            "category": "fault",
        },
    )
    with pytest.raises(InvalidInput, match="humidity"):
        dataclasses.replace(smoke, default_rules=bad)


def test_numeric_metrics_need_bounds() -> None:
    problems = check_specs({"x": MetricSpec("x", "m", "float", text=Text("距离", "distance"))}, {})
    assert problems == ["metric 'x' needs a minimum and a maximum"]


def test_registry() -> None:
    assert list(DRIVERS) == ["smoke", "door", "bodycam", "panic_button"]
    assert all(DRIVERS[d.kind] is d for d in ALL)
    with pytest.raises(NotFound) as info:
        get_driver("toaster")
    assert "smoke" in info.value.message
    with pytest.raises(TypeError):
        DRIVERS["toaster"] = ALL[0]  # type: ignore[index]


def test_content_format_maps_to_meta() -> None:
    assert DecodeMeta.from_content_format(60).fmt == "cbor"
    assert DecodeMeta.from_content_format(50).fmt == "json"
    assert DecodeMeta.from_content_format(42).fmt == "binary"
    assert DecodeMeta.from_content_format(None).fmt == "auto"
    assert DecodeMeta.from_content_format(0).fmt == "auto"


def test_drivers_import_no_transport_and_nothing_of_the_hub_but_errors() -> None:
    transports = ("amqtt", "aiocoap", "paho", "sqlalchemy", "fastapi", "httpx", "twilio")
    code = f"import sys, drivers; print(sorted(m for m in sys.modules if m.split('.')[0] in {transports}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    source = "\n".join(p.read_text() for p in Path(drivers.__file__).parent.glob("*.py"))
    hub_imports = set(re.findall(r"^\s*(?:from|import) (hub[\w.]*)", source, re.M))
    assert hub_imports == {"hub.errors"}
