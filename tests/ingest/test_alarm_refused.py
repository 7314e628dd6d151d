"""An uplink carrying an alarm never vanishes quietly: refused, it is counted, logged, kept and streamed."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from drivers import DRIVERS
from hub.errors import DecodeError
from tests.ingest.test_sessions import Hub, frame, hub

__all__ = ["hub"]

PANIC = DRIVERS["panic_button"]


def press(*events: str) -> bytes:
    """A wall button's binary frame."""
    fields = {"seq": 1, "battery": 80, "rssi": -70, "variant": "wall", "events": list(events)}
    return PANIC.encode(fields, "binary")


def alarms_refused(hub: Hub, reason: str, kind: str = "smoke") -> float:
    """iothub_ingest_alarms_refused_total for one reason."""
    labels = {"transport": "test", "kind": kind, "reason": reason}
    registry = hub.service.pipeline.metrics.registry
    return registry.get_sample_value("iothub_ingest_alarms_refused_total", labels) or 0.0


def drain(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every event published so far."""
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


def refuse(hub: Hub, payload: bytes) -> str:
    """Hand an uplink of S-1 to the pipeline, which must refuse it; returns the reason."""
    device = hub.service.directory.get("S-1")
    assert device is not None
    with pytest.raises(DecodeError) as info:
        hub.service.pipeline.accept(device, payload, "test")
    return info.value.reason


def bad_crc(payload: bytes) -> bytes:
    """The frame with its CRC broken."""
    return payload[:-1] + bytes([payload[-1] ^ 0xFF])


async def test_a_replayed_alarm_is_counted_logged_kept_and_streamed(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    device = await hub.device()
    alarm = frame(7, alarm=True)
    assert hub.send(device, alarm)
    caplog.set_level(logging.WARNING, logger="hub.ingest")
    async with hub.service.bus.subscribe() as live:
        assert refuse(hub, alarm) == "replayed"
        assert refuse(hub, alarm) == "replayed"
        events = [e for e in drain(live) if e["type"] == "alarm_refused"]
    assert len(events) == 2
    assert {k: events[0][k] for k in ("device", "kind", "transport", "reason", "events", "decoded")} == {
        "device": "S-1",
        "kind": "smoke",
        "transport": "test",
        "reason": "replayed",
        "events": ["alarm"],
        "decoded": True,
    }
    assert alarms_refused(hub, "replayed") == 2
    letters = hub.service.dead_letters.recent(2)
    assert [(letter.reason, letter.alarms) for letter in letters] == [("replayed", ("alarm",))] * 2
    assert letters[0].as_dict()["alarms"] == ["alarm"]
    # Logged once each, although the dead letters log a device at most once a minute.
    lines = [r.getMessage() for r in caplog.records if "S-1" in r.getMessage()]
    assert len(lines) == 2 and all("alarm" in line and "replayed" in line for line in lines)


# Payloads of S-1 that do not decode but show an alarm, with the reason each is refused for.
UNDECODABLE = [
    ("unknown_field", json.dumps({"seq": 9, "ev": ["alarm"], "firmware": "2.1"}).encode()),
    ("unknown_event", json.dumps({"seq": 9, "ev": ["alarm", "hush"]}).encode()),
    ("out_of_range", json.dumps({"seq": 9, "ev": ["alarm"], "battery": 140}).encode()),
    ("bad_crc", bad_crc(frame(9, alarm=True))),
    ("bad_version", bytes([0xF1, 0x02]) + frame(9, alarm=True)[2:]),
]


@pytest.mark.parametrize(("reason", "payload"), UNDECODABLE, ids=[u[0] for u in UNDECODABLE])
async def test_an_undecodable_alarm_is_reported_as_a_guess(hub: Hub, reason: str, payload: bytes) -> None:
    await hub.device()
    async with hub.service.bus.subscribe() as live:
        assert refuse(hub, payload) == reason
        events = drain(live)
    assert [(e["type"], e["reason"], e["events"], e["decoded"]) for e in events] == [
        ("alarm_refused", reason, ["alarm"], False)
    ]
    assert alarms_refused(hub, reason) == 1
    assert hub.service.dead_letters.recent(1)[0].alarms == ("alarm",)


async def test_a_refusal_without_an_alarm_is_only_a_dead_letter(hub: Hub) -> None:
    device = await hub.device()
    quiet = frame(3)
    assert hub.send(device, quiet)
    async with hub.service.bus.subscribe() as live:
        assert refuse(hub, quiet) == "replayed"
        assert refuse(hub, bad_crc(frame(4))) == "bad_crc"
        assert refuse(hub, b'{"seq": 5, "ev": ["tamper"], "x": 1}') == "unknown_field"
        assert refuse(hub, b"\x00garbage") == "unknown_format"
        assert drain(live) == []
    assert [letter.alarms for letter in hub.service.dead_letters.recent(4)] == [()] * 4
    assert alarms_refused(hub, "replayed") == 0


@pytest.mark.parametrize(
    ("kind", "payload", "expected"),
    [
        (
            "panic_button",
            press("pressed_long", "low_battery"),
            ("pressed_long",),
        ),
        (
            "panic_button",
            bad_crc(press("pressed_long")),
            ("pressed_long",),
        ),
        (
            "panic_button",
            b'{"ev": ["pressed_single", 3, "fall_detected", "pressed_single"], "z": 0}',
            ("pressed_single", "fall_detected"),
        ),
        ("door", b'{"ev": ["forced"], "open": 1}', ("forced",)),
        ("door", bytes.fromhex("a16265768166666f72636564"), ("forced",)),  # CBOR {"ev": ["forced"]}
        ("bodycam", b'{"ev": ["sos", "fall", "recording_started"], "lat": 1}', ("sos", "fall")),
        ("smoke", press("pressed_long"), ()),  # another kind's frame
        ("smoke", b'["alarm"]', ()),
        ("smoke", b"\xf1\x01", ()),
        ("smoke", b"", ()),
    ],
)
def test_drivers_guess_alarms_only_from_their_declared_alarm_events(
    kind: str, payload: bytes, expected: tuple[str, ...]
) -> None:
    """Read from the event byte of the kind's own frames, or an object's ``ev`` list; never raises."""
    driver = DRIVERS[kind]
    hint = driver.alarm_hint(payload)
    assert hint == expected
    assert set(hint) <= driver.alarm_events


def test_alarm_events_are_declared_by_the_drivers() -> None:
    assert {kind: sorted(d.alarm_events) for kind, d in DRIVERS.items()} == {
        "smoke": ["alarm"],
        "door": ["forced"],
        "bodycam": ["fall", "sos"],
        "panic_button": ["fall_detected", "pressed_long", "pressed_single"],
    }
