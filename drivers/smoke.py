"""Smoke detector: optical smoke density, temperature, battery and signal; NB-IoT, MQTT or CoAP."""

from __future__ import annotations

from drivers.base import CommandSpec, Driver, EventSpec, MetricSpec, Parts, Text, Value
from drivers.codec import check_ranges, schema
from drivers.convert import SET_HEARTBEAT, BitNames, by_name, check_reserved, vocabulary
from drivers.frame import FLAG_HEARTBEAT, FrameLayout, frame_ts, require, to_fixed

__all__ = ["DRIVER", "EVENT_BITS", "FRAME", "decode_frame", "encode_frame"]

FLAG_ALARM = 0x02
FRAME = FrameLayout(0xF1, "HhBB")  # smoke mdB/m, temperature 0.1 °C, battery %, -rssi dBm
EVENT_BITS = BitNames("alarm", "alarm_cleared", "test_button", "tamper", "fault")
_BODY = ("smoke", "temperature", "battery", "rssi")

METRICS: dict[str, MetricSpec] = {
    "smoke": MetricSpec(
        "smoke",
        "dB/m",
        "float",
        0.0,
        10.0,
        description="optical obscuration",
        text=Text("烟雾浓度", "smoke density"),
    ),
    **vocabulary("temperature", "battery", "rssi"),
    "alarm": MetricSpec(
        "alarm", "", "bool", description="the detector is sounding now", text=Text("正在报警", "sounding")
    ),
}
SCHEMA = schema(METRICS)

EVENTS: dict[str, EventSpec] = by_name(
    # A fire is the whole building's: every detector that smells it is the same incident.
    EventSpec(
        "alarm",
        "critical",
        "fire",
        False,
        "smoke above the alarm threshold",
        text=Text("烟感报警", "Smoke alarm"),
        correlate="building",
        alarm=True,
    ),
    EventSpec(
        "alarm_cleared",
        "info",
        "fire",
        False,
        "smoke back below the threshold",
        text=Text("烟雾已消散", "Smoke cleared"),
        correlate="building",
    ),
    EventSpec(
        "test_button",
        "info",
        "test",
        True,
        "someone pressed the test button",
        text=Text("按下了烟感测试键", "Smoke detector test button pressed"),
        correlate="none",
    ),
    EventSpec(
        "tamper",
        "major",
        "tamper",
        False,
        "removed from its base or opened",
        text=Text("烟感被拆动", "Smoke detector removed or opened"),
        correlate="building",
    ),
    EventSpec(
        "fault",
        "major",
        "fault",
        False,
        "chamber, sounder or sensor fault",
        text=Text("烟感故障", "Smoke detector fault"),
        correlate="building",
    ),
)

COMMANDS: dict[str, CommandSpec] = by_name(
    CommandSpec("silence", {}, "hush the sounder for the device's hush period"),
    CommandSpec("self_test", {}, "run the chamber and sounder self-test"),
    SET_HEARTBEAT,
)

RULES = (
    {
        "name": "smoke-alarm",
        "type": "event",
        "event": "alarm",
        "clear_event": "alarm_cleared",
        "severity": "critical",
        "category": "fire",
    },
    {
        "name": "heat-high",
        "type": "threshold",
        "metric": "temperature",
        "op": ">",
        "value": 57,  # EN 54-5 class A1 fixed-temperature heat detectors trip between 54 and 65 °C
        "clear": 50,
        "for_s": 0,
        "severity": "critical",
        "category": "fire",
        "text": {"zh-CN": "温度过高（超过57°C）", "en": "Heat above 57 °C"},
    },
    {"name": "smoke-tamper", "type": "event", "event": "tamper", "severity": "major", "category": "tamper"},
    {"name": "smoke-fault", "type": "event", "event": "fault", "severity": "major", "category": "fault"},
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
        "text": {"zh-CN": "烟感电量低", "en": "Smoke detector battery low"},
    },
    {
        "name": "silent",
        "type": "inactivity",
        "factor": 2.5,
        "severity": "major",
        "category": "fault",
        "text": {"zh-CN": "烟感超时未上报", "en": "Smoke detector has not reported in time"},
    },
)


def decode_frame(payload: bytes) -> Parts:
    """Decode a smoke frame (magic 0xF1)."""
    _m, _v, seq, ts, flags, events, smoke, temperature, battery, rssi = FRAME.unpack(payload)
    check_reserved(flags, FLAG_HEARTBEAT | FLAG_ALARM)
    metrics: dict[str, Value] = {
        "smoke": smoke / 1000,
        "temperature": temperature / 10,
        "battery": battery,
        "rssi": -rssi,
        "alarm": bool(flags & FLAG_ALARM),
    }
    check_ranges(metrics, SCHEMA)
    return seq, frame_ts(ts), metrics, EVENT_BITS.decode(events), bool(flags & FLAG_HEARTBEAT)


def encode_frame(parts: Parts) -> bytes:
    """Encode reading parts as a smoke frame."""
    metrics = parts[2]
    smoke, temperature, battery, rssi = require(metrics, _BODY)
    flags = FLAG_ALARM if metrics.get("alarm") else 0
    body = (to_fixed(smoke, 1000), to_fixed(temperature, 10), int(battery), -int(rssi))
    return FRAME.pack(parts, flags, EVENT_BITS.encode(parts[3]), *body)


DRIVER = Driver(
    kind="smoke",
    title="Smoke detector",
    metrics=METRICS,
    events=EVENTS,
    heartbeat_interval_s=4 * 3600,
    default_rules=RULES,
    commands=COMMANDS,
    decode_frame=decode_frame,
    encode_frame=encode_frame,
    magic=FRAME.magic,
    frame_events=EVENT_BITS.names,
)
