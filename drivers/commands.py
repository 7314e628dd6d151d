"""Downlink commands: checked against the driver's CommandSpecs, sent as JSON or CBOR."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from drivers import codec
from hub.errors import DecodeError, InvalidInput, NotFound, ValidationFailed

if TYPE_CHECKING:
    from drivers.base import CommandSpec

__all__ = ["RESULT_KEYS", "decode_result", "encode_command"]

# result key -> (type the device sends, key in the returned dict)
RESULT_KEYS: Mapping[str, tuple[type, str]] = {
    "cid": (int, "cid"),
    "cmd": (str, "command"),
    "ok": (bool, "ok"),
    "code": (int, "code"),
    "msg": (str, "message"),
    "data": (dict, "data"),
}


def encode_command(
    specs: Mapping[str, CommandSpec], name: str, params: Mapping[str, Any], *, cid: int | None, fmt: str
) -> bytes:
    """Check a command and its parameters, then encode {"cmd", "cid", "args"}."""
    spec = specs.get(name)
    if spec is None:
        raise NotFound(f"command {name!r} is not one this device kind knows", field="command")
    args: dict[str, Any] = {}
    rules = codec.schema(spec.params)
    for key, value in params.items():
        rule = rules.get(key)
        if rule is None:
            raise InvalidInput(f"{name} takes no parameter {key!r}", field=key)
        try:
            args[key] = codec.check_value(rule, key, value)
        except ValidationFailed as exc:
            raise InvalidInput(exc.message, field=key) from exc
    missing = [key for key, pspec in spec.params.items() if pspec.required and key not in args]
    if missing:
        raise InvalidInput(f"{name} needs {', '.join(missing)}", field=missing[0])
    obj: dict[str, Any] = {"cmd": name, "args": args}
    if cid is not None:
        if type(cid) is not int or not 0 <= cid <= codec.SEQ_MAX:
            raise InvalidInput(f"cid must be an integer in [0, {codec.SEQ_MAX}]", field="cid")
        obj["cid"] = cid
    if fmt == "json":
        return codec.dump_json(obj)
    if fmt == "cbor":
        return codec.dump_cbor(obj)
    raise InvalidInput(f"commands are sent as json or cbor, not {fmt!r}", field="fmt")


def decode_result(specs: Mapping[str, CommandSpec], payload: bytes) -> dict[str, Any]:
    """Decode {"cid", "cmd", "ok", "code", "msg", "data"} into {"cid", "command", "ok", ...}."""
    fmt = codec.sniff(payload)
    if fmt == "binary":
        raise DecodeError("unknown_format", "command results are JSON or CBOR objects")
    obj = codec.load_json(payload) if fmt == "json" else codec.load_cbor(payload)
    if type(obj) is not dict:
        raise DecodeError("not_object", f"command result must be an object, not {type(obj).__name__}")
    out: dict[str, Any] = {
        "cid": None,
        "command": None,
        "ok": None,
        "code": None,
        "message": None,
        "data": {},
    }
    for key, value in obj.items():
        shape = RESULT_KEYS.get(key)
        if shape is None:
            raise DecodeError("unknown_field", f"unknown field {key!r}")
        if type(value) is not shape[0]:
            raise codec.invalid("wrong_type", key, f"{key} must be {shape[0].__name__}")
        out[shape[1]] = value
    if out["ok"] is None or out["command"] is None:
        raise DecodeError("missing_field", "a command result needs cmd and ok")
    if out["command"] not in specs:
        raise codec.invalid("unknown_command", "cmd", f"unknown command {out['command']!r}")
    if out["cid"] is not None and not 0 <= out["cid"] <= codec.SEQ_MAX:
        raise codec.invalid("out_of_range", "cid", f"cid outside [0, {codec.SEQ_MAX}]")
    return out
