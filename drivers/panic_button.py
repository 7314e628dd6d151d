"""Panic button of an elder living alone: a worn pendant (with fall detection) or a wall button."""

from __future__ import annotations

from drivers.base import CommandSpec, Driver, EventSpec, MetricSpec, ParamSpec, Parts, Text, Value
from drivers.codec import check_ranges, schema
from drivers.convert import SET_HEARTBEAT, BitNames, by_name, check_reserved, vocabulary
from drivers.frame import FLAG_HEARTBEAT, FrameLayout, frame_ts, require

__all__ = ["DRIVER", "EVENT_BITS", "FRAME", "decode_frame", "encode_frame"]

FLAG_PENDANT = 0x02  # clear: wall-mounted button
FLAG_MOVING = 0x04  # pendants only: the wearer moved since the last uplink
FRAME = FrameLayout(0xF4, "BB")  # battery %, -rssi dBm
EVENT_BITS = BitNames("pressed_single", "pressed_double", "pressed_long", "fall_detected", "low_battery")

METRICS: dict[str, MetricSpec] = {
    **vocabulary("battery", "rssi", "moving"),
    "variant": MetricSpec(
        "variant",
        "",
        "str",
        choices=("pendant", "wall"),
        description="how it is mounted",
        text=Text("安装方式", "mounting"),
    ),
}
SCHEMA = schema(METRICS)

EVENTS: dict[str, EventSpec] = by_name(
    # One person's emergencies: a case per household button or pendant, whatever the neighbours do.
    EventSpec(
        "pressed_single",
        "major",
        "panic",
        True,
        "one press: a call for help",
        text=Text("紧急按钮单击求助", "Panic button pressed"),
        correlate="none",
        alarm=True,
    ),
    EventSpec(
        "pressed_double",
        "info",
        "activity",
        True,
        "two presses: a check-in, 'I am fine'",
        text=Text("双击报平安", "Double press: I am fine"),
        correlate="none",
    ),
    EventSpec(
        "pressed_long",
        "critical",
        "panic",
        True,
        "held for 3 s: emergency",
        text=Text("紧急按钮长按求助", "Panic button held"),
        correlate="none",
        alarm=True,
    ),
    EventSpec(
        "fall_detected",
        "critical",
        "fall",
        False,
        "the pendant detected a fall",
        text=Text("吊坠检测到跌倒", "The pendant detected a fall"),
        correlate="none",
        alarm=True,
    ),
    EventSpec(
        "low_battery",
        "minor",
        "battery",
        False,
        "the device's own low-battery warning",
        text=Text("紧急按钮电量低", "Panic button battery low"),
        correlate="building",
    ),
)

COMMANDS: dict[str, CommandSpec] = by_name(
    SET_HEARTBEAT,
    CommandSpec(
        "find_me",
        {"duration_s": ParamSpec("int", "how long to beep", 1, 60)},
        "beep so a mislaid pendant can be found",
    ),
    CommandSpec(
        "set_fall_detection",
        {
            "enabled": ParamSpec("bool", "detect falls"),
            "sensitivity": ParamSpec("int", "1 least to 5 most sensitive", 1, 5, required=False),
        },
        "switch fall detection (pendants only)",
    ),
)

RULES = (
    {
        "name": "panic-long",
        "type": "event",
        "event": "pressed_long",
        "severity": "critical",
        "category": "panic",
    },
    {
        "name": "panic-single",
        "type": "event",
        "event": "pressed_single",
        "severity": "major",
        "category": "panic",
    },
    {"name": "fall", "type": "event", "event": "fall_detected", "severity": "critical", "category": "fall"},
    {
        "name": "battery-low",
        "type": "event",
        "event": "low_battery",
        "severity": "minor",
        "category": "battery",
    },
    {
        "name": "silent",
        "type": "inactivity",
        "factor": 2.5,
        "severity": "major",
        "category": "fault",
        "text": {"zh-CN": "紧急按钮超时未上报", "en": "Panic button has not reported in time"},
    },
)


def decode_frame(payload: bytes) -> Parts:
    """Decode a panic-button frame (magic 0xF4)."""
    _m, _v, seq, ts, flags, events, battery, rssi = FRAME.unpack(payload)
    check_reserved(flags, FLAG_HEARTBEAT | FLAG_PENDANT | FLAG_MOVING)
    metrics: dict[str, Value] = {
        "battery": battery,
        "rssi": -rssi,
        "variant": "pendant" if flags & FLAG_PENDANT else "wall",
        "moving": bool(flags & FLAG_MOVING),
    }
    check_ranges(metrics, SCHEMA)
    return seq, frame_ts(ts), metrics, EVENT_BITS.decode(events), bool(flags & FLAG_HEARTBEAT)


def encode_frame(parts: Parts) -> bytes:
    """Encode reading parts as a panic-button frame."""
    metrics = parts[2]
    battery, rssi, variant = require(metrics, ("battery", "rssi", "variant"))
    flags = (FLAG_PENDANT if variant == "pendant" else 0) | (FLAG_MOVING if metrics.get("moving") else 0)
    return FRAME.pack(parts, flags, EVENT_BITS.encode(parts[3]), int(battery), -int(rssi))


DRIVER = Driver(
    kind="panic_button",
    title="Panic button",
    metrics=METRICS,
    events=EVENTS,
    heartbeat_interval_s=1800,
    default_rules=RULES,
    commands=COMMANDS,
    decode_frame=decode_frame,
    encode_frame=encode_frame,
    magic=FRAME.magic,
    frame_events=EVENT_BITS.names,
    activity_metrics=("moving",),
)
