"""Downlink commands and their results."""

from __future__ import annotations

import json

import cbor2
import pytest

from drivers import DRIVERS, get_driver
from hub.errors import DecodeError, InvalidInput, NotFound, ValidationFailed


def test_every_command_encodes_with_valid_params() -> None:
    samples = {"int": None, "bool": True}
    for driver in DRIVERS.values():
        assert driver.commands
        for name, spec in driver.commands.items():
            params = {
                key: int(p.minimum) if p.type == "int" and p.minimum is not None else samples[p.type]
                for key, p in spec.params.items()
            }
            obj = json.loads(driver.encode_command(name, params, cid=7))
            assert obj == {"cmd": name, "cid": 7, "args": params}


def test_command_as_cbor_without_cid() -> None:
    payload = get_driver("panic_button").encode_command("find_me", {"duration_s": 10}, fmt="cbor")
    assert cbor2.loads(payload) == {"cmd": "find_me", "args": {"duration_s": 10}}


def test_optional_param_may_be_left_out() -> None:
    payload = get_driver("panic_button").encode_command("set_fall_detection", {"enabled": False})
    assert json.loads(payload)["args"] == {"enabled": False}


@pytest.mark.parametrize(
    ("name", "params", "field"),
    [
        ("set_heartbeat", {"interval_s": 10}, "interval_s"),
        ("set_heartbeat", {"interval_s": "3600"}, "interval_s"),
        ("set_heartbeat", {}, "interval_s"),
        ("set_heartbeat", {"interval_s": 3600, "jitter": 5}, "jitter"),
    ],
)
def test_bad_command_params(name: str, params: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        get_driver("smoke").encode_command(name, params)
    assert info.value.field == field


def test_unknown_command_and_bad_cid() -> None:
    smoke = get_driver("smoke")
    with pytest.raises(NotFound):
        smoke.encode_command("start_recording", {})
    with pytest.raises(InvalidInput) as info:
        smoke.encode_command("silence", {}, cid=-1)
    assert info.value.field == "cid"


def test_result_decodes_from_json_and_cbor() -> None:
    bodycam = get_driver("bodycam")
    result = {"cid": 7, "cmd": "locate", "ok": True, "code": 0, "msg": "sent", "data": {"fix": True}}
    expected = {
        "cid": 7,
        "command": "locate",
        "ok": True,
        "code": 0,
        "message": "sent",
        "data": {"fix": True},
    }
    assert bodycam.decode_command_result(json.dumps(result).encode()) == expected
    assert bodycam.decode_command_result(cbor2.dumps(result)) == expected
    minimal = bodycam.decode_command_result(b'{"cmd":"stop_recording","ok":false}')
    assert minimal == {
        "cid": None,
        "command": "stop_recording",
        "ok": False,
        "code": None,
        "message": None,
        "data": {},
    }


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"cmd":"locate"}', "missing_field"),
        (b'{"cmd":"locate","ok":"yes"}', "wrong_type"),
        (b'{"cmd":"explode","ok":true}', "unknown_command"),
        (b'{"cmd":"locate","ok":true,"extra":1}', "unknown_field"),
        (b'{"cmd":"locate","ok":true,"cid":-3}', "out_of_range"),
        (b"[]", "unknown_format"),
        (b"\xf3\x01", "unknown_format"),
        (b'{"cmd":', "bad_json"),
    ],
)
def test_bad_results(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        get_driver("bodycam").decode_command_result(payload)
    assert info.value.reason == reason
    if reason in ("wrong_type", "unknown_command", "out_of_range"):
        assert isinstance(info.value, ValidationFailed)
