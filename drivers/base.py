"""The small model types every driver is made of: specs, the Reading, and the Driver itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from drivers import codec, commands, rules
from hub.errors import DecodeError, InvalidInput

__all__ = [
    "LANGUAGES",
    "MAX_PAYLOAD",
    "CommandSpec",
    "Correlate",
    "DecodeMeta",
    "Driver",
    "EventSpec",
    "Format",
    "MetricSpec",
    "ParamSpec",
    "Parts",
    "Reading",
    "Text",
    "Value",
]

Value = float | int | bool | str
Format = Literal["auto", "json", "cbor", "binary"]
Severity = Literal["critical", "major", "minor", "info"]
MetricType = Literal["float", "int", "bool", "str"]
# Whether alerts of one building fold into one case ("building": a hazard it shares, such as a fire) or each
# device's or household's alert is its own case ("none": one person's emergency).
Correlate = Literal["building", "none"]
# The languages the hub speaks to people in (a responder's ``language``).
LANGUAGES = ("zh-CN", "en")
# (seq, ts, metrics, events, heartbeat or None when the payload did not say)
Parts = tuple[int | None, float | None, dict[str, Value], tuple[str, ...], bool | None]

MAX_PAYLOAD = 64 * 1024
_EVENT_BYTE = 11  # offset of the event bits in every frame header (drivers/frame.py)
_CONTENT_FORMATS: Mapping[int, Format] = {50: "json", 60: "cbor", 42: "binary"}


@dataclass(slots=True)
class Reading:
    """One decoded uplink, in the shared vocabulary."""

    kind: str
    seq: int | None
    ts: float | None
    metrics: dict[str, Value]
    events: tuple[str, ...]
    activity: bool
    heartbeat: bool


@dataclass(frozen=True, slots=True)
class Text:
    """What people read, in each language the hub speaks."""

    zh_cn: str
    en: str

    @classmethod
    def of(cls, texts: Mapping[str, str]) -> Text:
        """From a ``{"zh-CN": …, "en": …}`` mapping; InvalidInput unless both are there and non-empty."""
        if set(texts) != set(LANGUAGES) or not all(isinstance(v, str) and v.strip() for v in texts.values()):
            raise InvalidInput(
                f"a text needs exactly {' and '.join(LANGUAGES)}, each non-empty", field="text"
            )
        return cls(texts["zh-CN"], texts["en"])

    def get(self, language: str) -> str:
        """The text in ``language`` (zh-CN unless it is en)."""
        return self.en if language == "en" else self.zh_cn

    def as_dict(self) -> dict[str, str]:
        """``{"zh-CN": …, "en": …}``, as stored and sent."""
        return {"zh-CN": self.zh_cn, "en": self.en}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A measured value: unit, type and the range a device may report."""

    name: str
    unit: str
    type: MetricType
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    description: str = ""
    # Its name for people, as in "温度 > 57 °C" (a threshold rule's text is made from it).
    text: Text | None = field(default=None, kw_only=True)


@dataclass(frozen=True, slots=True)
class EventSpec:
    """A normalized event: its case category, whether a person caused it, its text, and who shares it.

    ``alarm`` marks an alarm or emergency (fire, panic, fall, SOS, forced entry): an uplink carrying it
    that the hub refuses for any reason is shown to the command center as ``alarm_refused``.
    """

    name: str
    severity: Severity
    category: str
    activity: bool
    description: str = ""
    text: Text = field(kw_only=True)
    correlate: Correlate = field(kw_only=True)
    alarm: bool = field(default=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter of a downlink command."""

    type: MetricType
    description: str
    minimum: float | None = None
    maximum: float | None = None
    required: bool = True


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A downlink command a device understands."""

    name: str
    params: Mapping[str, ParamSpec]
    description: str = ""


@dataclass(frozen=True, slots=True)
class DecodeMeta:
    """How to read a payload: its format, or "auto" to sniff it from the first byte."""

    fmt: Format = "auto"

    @classmethod
    def from_content_format(cls, content_format: int | None) -> DecodeMeta:
        """Map a CoAP Content-Format number (50 json, 60 cbor, 42 octet-stream) to a meta."""
        return cls(_CONTENT_FORMATS.get(content_format, "auto") if content_format is not None else "auto")


@dataclass(frozen=True, slots=True)
class Driver:
    """A device kind: what it measures and reports, its formats, default rules and commands."""

    kind: str
    title: str
    metrics: Mapping[str, MetricSpec]
    events: Mapping[str, EventSpec]
    heartbeat_interval_s: float
    default_rules: tuple[dict[str, Any], ...]
    commands: Mapping[str, CommandSpec]
    decode_frame: Callable[[bytes], Parts]
    encode_frame: Callable[[Parts], bytes]
    magic: int
    refine: Callable[[dict[str, Value], tuple[str, ...]], tuple[str, ...]] | None = None
    activity_metrics: tuple[str, ...] = ()
    formats: tuple[Format, ...] = ("json", "cbor", "binary")
    # The names of the frame's event bits, bit 0 first: how alarm_hint reads a frame that failed to decode.
    frame_events: tuple[str, ...] = ()
    alarm_events: frozenset[str] = field(init=False, repr=False, compare=False)
    _activity_events: frozenset[str] = field(init=False, repr=False, compare=False)
    _schema: dict[str, codec.Rule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = rules.check_specs(self.metrics, self.events)
        problems += rules.check_rules(self.default_rules, self.metrics, self.events)
        if problems:
            raise InvalidInput(f"driver {self.kind}: " + "; ".join(problems), field="default_rules")
        active = frozenset(name for name, spec in self.events.items() if spec.activity)
        object.__setattr__(self, "_activity_events", active)
        alarms = frozenset(name for name, spec in self.events.items() if spec.alarm)
        object.__setattr__(self, "alarm_events", alarms)
        object.__setattr__(self, "_schema", codec.schema(self.metrics))

    def decode(self, payload: bytes, meta: DecodeMeta | None = None) -> Reading:
        """Decode one uplink; raises DecodeError or ValidationFailed with a stable reason key."""
        size = len(payload)
        if size > MAX_PAYLOAD:
            raise DecodeError("too_large", f"payload of {size} bytes exceeds {MAX_PAYLOAD}")
        fmt = "auto" if meta is None else meta.fmt
        if fmt == "auto":
            fmt = codec.sniff(payload)
        if fmt == "binary":
            parts = self.decode_frame(payload)
        elif fmt == "json":
            parts = codec.parse_object(codec.load_json(payload), self._schema, self.events)
        elif fmt == "cbor":
            parts = codec.parse_object(codec.load_cbor(payload), self._schema, self.events)
        else:
            raise DecodeError("unknown_format", f"unknown format {fmt!r}")
        return self._reading(parts)

    def alarm_hint(self, payload: bytes) -> tuple[str, ...]:
        """The alarm events a payload that failed to decode seems to carry (best effort; never raises).

        Read from the object's ``ev`` list, or from a frame's event byte whatever its CRC or body: enough
        to tell the command center that a device tried to raise an alarm, not to open a case.
        """
        if not self.alarm_events or not payload or len(payload) > MAX_PAYLOAD:
            return ()
        names: list[str] = []
        if payload[0] == self.magic:
            if len(payload) > _EVENT_BYTE:
                mask = payload[_EVENT_BYTE]
                names = [name for bit, name in enumerate(self.frame_events) if mask >> bit & 1]
        else:
            try:
                fmt = codec.sniff(payload)
                if fmt == "binary":
                    return ()  # another kind's frame
                obj = codec.load_json(payload) if fmt == "json" else codec.load_cbor(payload)
            except DecodeError:
                return ()
            listed = obj.get("ev") if isinstance(obj, dict) else None
            if isinstance(listed, list):
                names = [name for name in listed if isinstance(name, str)]
        return tuple(name for name in dict.fromkeys(names) if name in self.alarm_events)

    def _reading(self, parts: Parts) -> Reading:
        seq, ts, metrics, events, heartbeat = parts
        if self.refine is not None:
            events = self.refine(metrics, events)
        activity = not self._activity_events.isdisjoint(events)
        if not activity:
            for name in self.activity_metrics:
                if metrics.get(name) is True:
                    activity = True
        return Reading(
            self.kind, seq, ts, metrics, events, activity, not events if heartbeat is None else heartbeat
        )

    def encode(self, fields: Mapping[str, Any], fmt: Format = "json") -> bytes:
        """Build the payload a device would send for these normalized fields (the inverse of decode)."""
        obj = codec.fields_to_object(fields, self.metrics)
        parts = codec.parse_object(obj, self._schema, self.events)
        if self.refine is not None:
            self.refine(parts[2], parts[3])  # cross-field checks, so encode refuses what decode would
        if fmt == "json":
            return codec.dump_json(obj)
        if fmt == "cbor":
            return codec.dump_cbor(obj)
        if fmt == "binary":
            return self.encode_frame(parts)
        raise InvalidInput(f"unknown format {fmt!r}", field="fmt")

    def encode_command(
        self, name: str, params: Mapping[str, Any], *, cid: int | None = None, fmt: Format = "json"
    ) -> bytes:
        """Encode a downlink command after checking it against the driver's CommandSpec."""
        return commands.encode_command(self.commands, name, params, cid=cid, fmt=fmt)

    def decode_command_result(self, payload: bytes) -> dict[str, Any]:
        """Decode a device's answer to a command (JSON or CBOR) into a plain dict."""
        if len(payload) > MAX_PAYLOAD:
            raise DecodeError("too_large", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        return commands.decode_result(self.commands, payload)
