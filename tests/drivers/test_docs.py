"""docs/devices.md and the reason keys stay in step with the drivers."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from drivers import ALL
from drivers.codec import REASONS

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "devices.md").read_text()


def test_every_kind_metric_event_and_command_is_documented() -> None:
    for driver in ALL:
        section = DOC.split(f"### {driver.kind} ", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        assert f"magic `{driver.magic:02X}`" in section
        for name in [*driver.metrics, *driver.events, *driver.commands]:
            assert f"`{name}`" in section or f"`{name}`" in DOC.split("## Binary frames")[0], name
        for command in driver.commands.values():
            for param in command.params:
                assert f"`{param}`" in section, (driver.kind, param)
        for rule in driver.default_rules:
            assert f"`{rule['name']}`" in DOC, rule["name"]


def test_every_reason_is_documented_in_the_table() -> None:
    for reason in REASONS:
        assert re.search(rf"^\| `{reason}` \| (DecodeError|ValidationFailed) \|", DOC, re.M), reason


def test_every_reason_raised_or_tested_is_a_known_key() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "drivers").glob("*.py"))
    raised = set(re.findall(r'(?:DecodeError|invalid)\(\s*"([a-z_]+)"', source))
    raised |= set(re.findall(r'reason = "([a-z_]+)" if .* else "([a-z_]+)"', source)[0])
    tested = {
        vector["reason"]
        for path in (ROOT / "tests" / "drivers" / "vectors").glob("*.yaml")
        for vector in yaml.safe_load(path.read_text())["bad"]
    }
    assert len(raised) >= 15
    assert raised | tested <= set(REASONS)
    assert {"bad_magic", "bad_length", "truncated"} <= raised


def test_the_alarm_events_table_matches_the_drivers() -> None:
    table = DOC.split("## Alarms the hub must not lose", 1)[1].split("\n## ", 1)[0]
    for driver in ALL:
        row = re.search(rf"^\| {driver.kind} \| (.*) \|$", table, re.M)
        assert row is not None, driver.kind
        assert set(re.findall(r"`([a-z_]+)`", row.group(1))) == driver.alarm_events


def test_every_events_text_and_correlation_are_documented() -> None:
    for driver in ALL:
        section = DOC.split(f"### {driver.kind} ", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        for event in driver.events.values():
            row = next(line for line in section.splitlines() if line.startswith(f"| `{event.name}` |"))
            assert f"| {event.correlate} |" in row, row
            assert f"| {event.text.zh_cn} / {event.text.en} |" in row, row
