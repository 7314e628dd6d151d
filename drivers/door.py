"""Door/window contact, optionally with lock sensing; battery reported in millivolts."""

from __future__ import annotations

from drivers.base import CommandSpec, Driver, EventSpec, MetricSpec, ParamSpec, Parts, Text, Value
from drivers.codec import check_ranges, schema
from drivers.convert import (
    SET_HEARTBEAT,
    BitNames,
    battery_from_mv,
    by_name,
    check_reserved,
    mv_from_battery,
    vocabulary,
)
from drivers.frame import FLAG_HEARTBEAT, FrameLayout, frame_ts, require
from hub.errors import InvalidInput

__all__ = ["DRIVER", "EVENT_BITS", "FRAME", "decode_frame", "encode_frame", "refine"]

FLAG_OPEN = 0x02
FLAG_LOCK_REPORTED = 0x04  # the contact is paired with a lock sensor; FLAG_LOCKED is meaningful
FLAG_LOCKED = 0x08
FRAME = FrameLayout(0xF2, "HB")  # battery mV, -rssi dBm
EVENT_BITS = BitNames("opened", "closed", "tamper", "forced")
# A CR123A/CR2032 lithium cell: 3.0 V fresh, the radio browns out near 2.2 V.
EMPTY_MV, FULL_MV = 2200, 3000

METRICS: dict[str, MetricSpec] = {
    "open": MetricSpec(
        "open", "", "bool", description="the door is open now", text=Text("门开着", "door open")
    ),
    "locked": MetricSpec(
        "locked",
        "",
        "bool",
        description="the bolt is thrown (lock-sensing models only)",
        text=Text("已上锁", "locked"),
    ),
    **vocabulary("battery", "voltage", "rssi"),
}
SCHEMA = schema(METRICS)

EVENTS: dict[str, EventSpec] = by_name(
    EventSpec(
        "opened",
        "info",
        "activity",
        True,
        "the door opened",
        text=Text("门被打开", "Door opened"),
        correlate="none",
    ),
    EventSpec(
        "closed",
        "info",
        "activity",
        True,
        "the door closed",
        text=Text("门被关上", "Door closed"),
        correlate="none",
    ),
    EventSpec(
        "tamper",
        "major",
        "tamper",
        False,
        "cover removed or magnet tampered with",
        text=Text("门磁被拆动", "Door sensor tampered with"),
        correlate="building",
    ),
    # A break-in is one household's: each household forced open is its own case.
    EventSpec(
        "forced",
        "critical",
        "intrusion",
        True,
        "opened while locked, without a prior unlock",
        text=Text("门被强行打开", "Door forced open"),
        correlate="none",
        alarm=True,
    ),
)

COMMANDS: dict[str, CommandSpec] = by_name(
    SET_HEARTBEAT,
    CommandSpec(
        "set_tamper",
        {"enabled": ParamSpec("bool", "report tamper events")},
        "switch the tamper switch on or off (for installation work)",
    ),
)

RULES = (
    {
        "name": "door-forced",
        "type": "event",
        "event": "forced",
        "severity": "critical",
        "category": "intrusion",
    },
    {"name": "door-tamper", "type": "event", "event": "tamper", "severity": "major", "category": "tamper"},
    {
        "name": "battery-low",
        "type": "threshold",
        "metric": "battery",
        "op": "<",
        "value": 15,
        "clear": 20,
        "for_s": 0,
        "severity": "minor",
        "category": "battery",
        "text": {"zh-CN": "门磁电量低", "en": "Door sensor battery low"},
    },
    {
        "name": "silent",
        "type": "inactivity",
        "factor": 2.5,
        "severity": "major",
        "category": "fault",
        "text": {"zh-CN": "门磁超时未上报", "en": "Door sensor has not reported in time"},
    },
)


def refine(metrics: dict[str, Value], events: tuple[str, ...]) -> tuple[str, ...]:
    """A forced door also opened; a battery given only as voltage gets its percentage."""
    if "battery" not in metrics and "voltage" in metrics:
        metrics["battery"] = battery_from_mv(round(float(metrics["voltage"]) * 1000), EMPTY_MV, FULL_MV)
    if "forced" in events and "opened" not in events:
        return ("opened", *events)
    return events


def decode_frame(payload: bytes) -> Parts:
    """Decode a door frame (magic 0xF2)."""
    _m, _v, seq, ts, flags, events, mv, rssi = FRAME.unpack(payload)
    check_reserved(flags, FLAG_HEARTBEAT | FLAG_OPEN | FLAG_LOCK_REPORTED | FLAG_LOCKED)
    metrics: dict[str, Value] = {"open": bool(flags & FLAG_OPEN)}
    if flags & FLAG_LOCK_REPORTED:
        metrics["locked"] = bool(flags & FLAG_LOCKED)
    metrics["battery"] = battery_from_mv(mv, EMPTY_MV, FULL_MV)
    metrics["voltage"] = mv / 1000
    metrics["rssi"] = -rssi
    check_ranges(metrics, SCHEMA)
    return seq, frame_ts(ts), metrics, EVENT_BITS.decode(events), bool(flags & FLAG_HEARTBEAT)


def encode_frame(parts: Parts) -> bytes:
    """Encode reading parts as a door frame; the voltage wins over the percentage when both are given."""
    metrics = parts[2]
    is_open, rssi = require(metrics, ("open", "rssi"))
    if "voltage" in metrics:
        mv = round(float(metrics["voltage"]) * 1000)
    elif "battery" in metrics:
        mv = mv_from_battery(float(metrics["battery"]), EMPTY_MV, FULL_MV)
    else:
        raise InvalidInput("a door frame needs voltage or battery", field="voltage")
    flags = FLAG_OPEN if is_open else 0
    if "locked" in metrics:
        flags |= FLAG_LOCK_REPORTED | (FLAG_LOCKED if metrics["locked"] else 0)
    return FRAME.pack(parts, flags, EVENT_BITS.encode(parts[3]), mv, -int(rssi))


DRIVER = Driver(
    kind="door",
    title="Door contact",
    metrics=METRICS,
    events=EVENTS,
    heartbeat_interval_s=3600,
    default_rules=RULES,
    commands=COMMANDS,
    decode_frame=decode_frame,
    encode_frame=encode_frame,
    magic=FRAME.magic,
    frame_events=EVENT_BITS.names,
    refine=refine,
)
