"""Body-worn camera of a grid worker: position, recording state, storage and SOS."""

from __future__ import annotations

from drivers.base import CommandSpec, Driver, EventSpec, MetricSpec, ParamSpec, Parts, Text, Value
from drivers.codec import check_ranges, invalid, schema
from drivers.convert import BitNames, by_name, check_reserved, vocabulary
from drivers.frame import FLAG_HEARTBEAT, FrameLayout, frame_ts, require, to_fixed

__all__ = ["DRIVER", "EVENT_BITS", "FRAME", "decode_frame", "encode_frame", "refine"]

FLAG_RECORDING = 0x02
FLAG_GPS_FIX = 0x04  # without a fix the position fields are zero and mean nothing
FLAG_MOVING = 0x08
# lat, lon 1e-7 °, accuracy 0.1 m, battery %, storage %, -rssi dBm
FRAME = FrameLayout(0xF3, "iiHBBB")
EVENT_BITS = BitNames("sos", "recording_started", "recording_stopped", "fall", "camera_covered")
_DEG = 10_000_000

METRICS: dict[str, MetricSpec] = {
    **vocabulary("lat", "lon", "accuracy", "battery", "rssi", "moving"),
    "recording": MetricSpec(
        "recording", "", "bool", description="video is being recorded", text=Text("正在录像", "recording")
    ),
    "storage": MetricSpec(
        "storage", "%", "int", 0, 100, description="storage used", text=Text("存储占用", "storage used")
    ),
}
SCHEMA = schema(METRICS)

EVENTS: dict[str, EventSpec] = by_name(
    # The wearer's own emergencies: one case per camera, whoever else is in the building.
    EventSpec(
        "sos",
        "critical",
        "sos",
        True,
        "the wearer pressed the SOS key",
        text=Text("执法记录仪一键求救", "Body camera SOS key pressed"),
        correlate="none",
        alarm=True,
    ),
    EventSpec(
        "recording_started",
        "info",
        "activity",
        True,
        "recording started",
        text=Text("执法记录仪开始录像", "Body camera started recording"),
        correlate="none",
    ),
    EventSpec(
        "recording_stopped",
        "info",
        "activity",
        True,
        "recording stopped",
        text=Text("执法记录仪停止录像", "Body camera stopped recording"),
        correlate="none",
    ),
    EventSpec(
        "fall",
        "critical",
        "fall",
        False,
        "free fall and impact, then stillness",
        text=Text("执法记录仪佩戴者跌倒", "Body camera wearer fell"),
        correlate="none",
        alarm=True,
    ),
    EventSpec(
        "camera_covered",
        "major",
        "tamper",
        False,
        "the lens has been dark while recording",
        text=Text("镜头被遮挡", "Camera lens covered"),
        correlate="building",
    ),
)

COMMANDS: dict[str, CommandSpec] = by_name(
    CommandSpec("start_recording", {}, "start recording video"),
    CommandSpec("stop_recording", {}, "stop recording video"),
    CommandSpec("locate", {}, "send a position report now"),
    CommandSpec(
        "set_report_interval",
        {"interval_s": ParamSpec("int", "seconds between position reports", 10, 3600)},
        "change how often the camera reports while on shift",
    ),
)

RULES = (
    {"name": "bodycam-sos", "type": "event", "event": "sos", "severity": "critical", "category": "sos"},
    {"name": "bodycam-fall", "type": "event", "event": "fall", "severity": "critical", "category": "fall"},
    {
        "name": "camera-covered",
        "type": "event",
        "event": "camera_covered",
        "severity": "major",
        "category": "tamper",
    },
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
        "text": {"zh-CN": "执法记录仪电量低", "en": "Body camera battery low"},
    },
    {
        "name": "storage-full",
        "type": "threshold",
        "metric": "storage",
        "op": ">",
        "value": 90,
        "clear": 80,
        "for_s": 0,
        "severity": "minor",
        "category": "fault",
        "text": {"zh-CN": "执法记录仪存储将满（超过90%）", "en": "Body camera storage over 90% full"},
    },
    {
        "name": "silent",
        "type": "inactivity",
        "factor": 2.5,
        "severity": "major",
        "category": "fault",
        "text": {"zh-CN": "执法记录仪超时未上报", "en": "Body camera has not reported in time"},
    },
)


def refine(metrics: dict[str, Value], events: tuple[str, ...]) -> tuple[str, ...]:
    """A position is lat and lon together; an accuracy needs a position."""
    has_lat, has_lon = "lat" in metrics, "lon" in metrics
    if has_lat != has_lon:
        raise invalid("inconsistent", "lat" if has_lon else "lon", "lat and lon come together")
    if "accuracy" in metrics and not has_lat:
        raise invalid("inconsistent", "accuracy", "accuracy without a position")
    return events


def decode_frame(payload: bytes) -> Parts:
    """Decode a bodycam frame (magic 0xF3)."""
    _m, _v, seq, ts, flags, events, lat, lon, accuracy, battery, storage, rssi = FRAME.unpack(payload)
    check_reserved(flags, FLAG_HEARTBEAT | FLAG_RECORDING | FLAG_GPS_FIX | FLAG_MOVING)
    metrics: dict[str, Value] = {}
    if flags & FLAG_GPS_FIX:
        metrics["lat"] = lat / _DEG
        metrics["lon"] = lon / _DEG
        metrics["accuracy"] = accuracy / 10
    metrics["battery"] = battery
    metrics["storage"] = storage
    metrics["rssi"] = -rssi
    metrics["recording"] = bool(flags & FLAG_RECORDING)
    metrics["moving"] = bool(flags & FLAG_MOVING)
    check_ranges(metrics, SCHEMA)
    return seq, frame_ts(ts), metrics, EVENT_BITS.decode(events), bool(flags & FLAG_HEARTBEAT)


def encode_frame(parts: Parts) -> bytes:
    """Encode reading parts as a bodycam frame."""
    metrics = parts[2]
    battery, storage, rssi = require(metrics, ("battery", "storage", "rssi"))
    flags = (FLAG_RECORDING if metrics.get("recording") else 0) | (
        FLAG_MOVING if metrics.get("moving") else 0
    )
    lat = lon = accuracy = 0
    if "lat" in metrics:
        flags |= FLAG_GPS_FIX
        lat, lon = to_fixed(metrics["lat"], _DEG), to_fixed(metrics["lon"], _DEG)
        accuracy = to_fixed(metrics.get("accuracy", 0.0), 10)
    body = (lat, lon, accuracy, int(battery), int(storage), -int(rssi))
    return FRAME.pack(parts, flags, EVENT_BITS.encode(parts[3]), *body)


DRIVER = Driver(
    kind="bodycam",
    title="Body-worn camera",
    metrics=METRICS,
    events=EVENTS,
    heartbeat_interval_s=300,
    default_rules=RULES,
    commands=COMMANDS,
    decode_frame=decode_frame,
    encode_frame=encode_frame,
    magic=FRAME.magic,
    frame_events=EVENT_BITS.names,
    refine=refine,
    activity_metrics=("moving",),
)
