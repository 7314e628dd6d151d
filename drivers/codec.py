"""Format sniffing, value checks and the JSON/CBOR object format every driver shares."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import cbor2
import orjson

from hub.errors import DecodeError, InvalidInput, ValidationFailed

if TYPE_CHECKING:
    from drivers.base import EventSpec, MetricSpec, ParamSpec, Parts, Value

__all__ = [
    "MAGIC_RANGE",
    "REASONS",
    "SEQ_MAX",
    "TS_RANGE",
    "Rule",
    "check_ranges",
    "check_value",
    "dump_cbor",
    "dump_json",
    "fields_to_object",
    "invalid",
    "load_cbor",
    "load_json",
    "parse_object",
    "schema",
    "sniff",
]

SEQ_MAX = 2**32 - 1
# Device clocks before 2000 are unset clocks, not history; after 2100 they are broken.
TS_RANGE = (946_684_800.0, 4_102_444_800.0)
# Frame magics live in 0xF0-0xF7: neither '{' / JSON whitespace nor a CBOR map (0xA0-0xBF).
MAGIC_RANGE = (0xF0, 0xF7)
_WHITESPACE = b" \t\r\n"
# Every reason key a decoder raises: Prometheus label values and dead-letter reasons, so keep them stable.
REASONS: Mapping[str, str] = {
    "empty": "the payload has no bytes",
    "too_large": "the payload exceeds 64 KiB",
    "unknown_format": "the first byte is no JSON object, CBOR map or frame magic",
    "bad_json": "not valid JSON",
    "bad_cbor": "not exactly one valid CBOR item",
    "not_object": "JSON/CBOR, but not an object/map",
    "unknown_field": "an object key this kind does not define",
    "missing_field": "a required key is absent (command results)",
    "bad_version": "object 'v' or frame version not supported",
    "bad_magic": "a frame of another kind",
    "truncated": "a frame shorter than its version defines",
    "bad_length": "a frame longer than its version defines",
    "bad_crc": "the frame's CRC-16 does not match",
    "reserved_bits": "a flag or event bit this version does not define",
    "wrong_type": "a value of the wrong type (ValidationFailed)",
    "out_of_range": "a value outside its documented range (ValidationFailed)",
    "unknown_event": "an event name this kind does not define (ValidationFailed)",
    "inconsistent": "fields that contradict each other (ValidationFailed)",
    "unknown_command": "a command result for a command this kind does not have (ValidationFailed)",
}
_FIELD_KEYS = {"seq": "seq", "ts": "ts", "events": "ev", "heartbeat": "hb"}


def invalid(reason: str, name: str, message: str) -> ValidationFailed:
    """Build a ValidationFailed that names the offending field."""
    exc = ValidationFailed(reason, message)
    exc.field = name
    return exc


def sniff(payload: bytes) -> Literal["json", "cbor", "binary"]:
    """Tell JSON, CBOR and binary frames apart by the first byte; the ranges do not overlap."""
    if not payload:
        raise DecodeError("empty", "empty payload")
    first = payload[0]
    if first == 0x7B:
        return "json"
    if 0xA0 <= first <= 0xBF:
        return "cbor"
    if MAGIC_RANGE[0] <= first <= MAGIC_RANGE[1]:
        return "binary"
    if first in _WHITESPACE:
        return "json"
    raise DecodeError(
        "unknown_format", f"first byte 0x{first:02x} is no JSON object, CBOR map or frame magic"
    )


def load_json(payload: bytes) -> Any:
    """Parse JSON bytes (UTF-8, RFC 8259: no NaN, integers within 64 bits), failures as reason "bad_json".

    orjson rather than the standard library: a third of the cost of a typical uplink's decode
    (docs/benchmarks.md), and stricter where devices should be (json.loads takes NaN and UTF-16).
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("bad_json", f"invalid JSON: {exc}") from exc


def load_cbor(payload: bytes) -> Any:
    """Parse exactly one CBOR item; trailing bytes are an error too."""
    fp = io.BytesIO(payload)
    try:
        obj = cbor2.CBORDecoder(fp, max_depth=16).decode()
    except Exception as exc:  # the decoder of untrusted bytes may fail in many ways; all mean bad CBOR
        raise DecodeError("bad_cbor", f"invalid CBOR: {exc}") from exc
    if fp.tell() != len(payload):
        raise DecodeError("bad_cbor", f"{len(payload) - fp.tell()} trailing bytes after the CBOR item")
    return obj


# (python type, minimum, maximum, choices): a spec flattened for the hot path
Rule = tuple[type, float | None, float | None, tuple[str, ...]]
_PYTYPES: Mapping[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


def schema(specs: Mapping[str, MetricSpec] | Mapping[str, ParamSpec]) -> dict[str, Rule]:
    """Flatten specs into rules; numeric metrics always have both bounds (rules.check_specs)."""
    return {
        name: (_PYTYPES[s.type], s.minimum, s.maximum, getattr(s, "choices", ())) for name, s in specs.items()
    }


def check_value(rule: Rule, name: str, value: Any) -> Value:
    """Check one value against its rule and return it (ints widened to float for float metrics)."""
    want, lo, hi, choices = rule
    vtype = type(value)
    if vtype is not want:
        # bool is an int subclass, hence the exact type test; JSON has no separate float for 2.0
        if want is float and vtype is int:
            value = float(value)
        else:
            raise invalid("wrong_type", name, f"{name} must be {want.__name__}, not {vtype.__name__}")
    # Written as "not lo <= v" so that NaN fails too.
    if (lo is not None and not lo <= value) or (hi is not None and not value <= hi):
        raise invalid("out_of_range", name, f"{name}={value!r} outside [{lo}, {hi}]")
    if choices and value not in choices:
        raise invalid("out_of_range", name, f"{name}={value!r} is not one of {choices}")
    return value  # type: ignore[no-any-return]


def check_ranges(metrics: Mapping[str, Value], rules: Mapping[str, Rule]) -> None:
    """Check the ranges of the numbers a frame decoder produced (their types are right by construction)."""
    for name, value in metrics.items():
        lo = rules[name][1]
        if lo is not None and not lo <= value <= rules[name][2]:  # type: ignore[operator]
            raise invalid("out_of_range", name, f"{name}={value!r} outside [{lo}, {rules[name][2]}]")


def _check_events(value: Any, events: Mapping[str, EventSpec]) -> tuple[str, ...]:
    if type(value) is not list:
        raise invalid("wrong_type", "ev", f"ev must be a list of event names, not {type(value).__name__}")
    for name in value:
        if type(name) is not str:
            raise invalid("wrong_type", "ev", f"event names are strings, not {type(name).__name__}")
        if name not in events:
            raise invalid("unknown_event", "ev", f"unknown event {name!r}")
    return tuple(dict.fromkeys(value))


def parse_object(obj: Any, rules: Mapping[str, Rule], events: Mapping[str, EventSpec]) -> Parts:
    """Validate a decoded JSON/CBOR object and split it into reading parts."""
    if type(obj) is not dict:
        raise DecodeError("not_object", f"payload must be an object, not {type(obj).__name__}")
    out: dict[str, Value] = {}
    seq: int | None = None
    ts: float | None = None
    evs: tuple[str, ...] = ()
    heartbeat: bool | None = None
    for key, value in obj.items():
        rule = rules.get(key)
        if rule is not None:
            # check_value's common case inline (right type, bounds held): this runs per field per uplink.
            want, lo, hi, choices = rule
            plain = type(value) is want and not choices  # a separate line keeps mypy from narrowing
            if plain and (lo is None or lo <= value) and (hi is None or value <= hi):
                out[key] = value
            else:
                out[key] = check_value(rule, key, value)
        elif key == "seq":
            if type(value) is not int:
                raise invalid("wrong_type", "seq", "seq must be an integer")
            if not 0 <= value <= SEQ_MAX:
                raise invalid("out_of_range", "seq", f"seq={value} outside [0, {SEQ_MAX}]")
            seq = value
        elif key == "ts":
            if type(value) is not int and type(value) is not float:
                raise invalid("wrong_type", "ts", "ts must be epoch seconds")
            if not TS_RANGE[0] <= value <= TS_RANGE[1]:
                raise invalid("out_of_range", "ts", f"ts={value!r} outside {TS_RANGE}")
            ts = float(value)
        elif key == "ev":
            evs = _check_events(value, events)
        elif key == "hb":
            if type(value) is not bool:
                raise invalid("wrong_type", "hb", "hb must be a boolean")
            heartbeat = value
        elif key == "v":
            if type(value) is not int:
                raise invalid("wrong_type", "v", "v must be an integer")
            if value != 1:
                raise DecodeError("bad_version", f"object version {value} is not supported (1 is)")
        else:
            raise DecodeError("unknown_field", f"unknown field {key!r}")
    return seq, ts, out, evs, heartbeat


def fields_to_object(fields: Mapping[str, Any], metrics: Mapping[str, MetricSpec]) -> dict[str, Any]:
    """Turn normalized fields (seq, ts, events, heartbeat, metrics) into the JSON/CBOR object."""
    obj: dict[str, Any] = {"v": 1}
    for key, value in fields.items():
        if value is None:
            continue
        if key in metrics:
            obj[key] = value
        elif key in _FIELD_KEYS:
            listy = key == "events" and isinstance(value, Iterable) and not isinstance(value, str)
            obj[_FIELD_KEYS[key]] = list(value) if listy else value
        else:
            raise InvalidInput(f"unknown field {key!r}", field=key)
    return obj


def dump_json(obj: Mapping[str, Any]) -> bytes:
    """Encode an object as compact JSON."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def dump_cbor(obj: Mapping[str, Any]) -> bytes:
    """Encode an object as CBOR."""
    return bytes(cbor2.dumps(obj))
