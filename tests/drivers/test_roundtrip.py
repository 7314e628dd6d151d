"""Encode then decode gives the fields back; random and mutated bytes only ever raise DecodeError."""

from __future__ import annotations

import random
from typing import Any

import cbor2
import pytest

from drivers import ALL, DRIVERS, get_driver
from drivers.base import MAX_PAYLOAD, DecodeMeta, Driver, MetricSpec
from drivers.codec import REASONS
from hub.errors import DecodeError, InvalidInput, ValidationFailed

FORMATS = ("json", "cbor", "binary")
# Binary resolution per metric: the fixed-point step documented in docs/devices.md.
STEP = {"smoke": 0.001, "temperature": 0.1, "lat": 1e-7, "lon": 1e-7, "accuracy": 0.1, "voltage": 0.001}


def _value(spec: MetricSpec, rng: random.Random) -> Any:
    if spec.type == "bool":
        return rng.random() < 0.5
    if spec.type == "str":
        return rng.choice(spec.choices)
    assert spec.minimum is not None and spec.maximum is not None
    if spec.type == "int":
        return rng.randint(int(spec.minimum), int(spec.maximum))
    step = STEP[spec.name]
    return round(rng.uniform(spec.minimum, spec.maximum) / step) * step


def _fields(driver: Driver, rng: random.Random) -> dict[str, Any]:
    fields: dict[str, Any] = {name: _value(spec, rng) for name, spec in driver.metrics.items()}
    if driver.kind == "door":
        fields["voltage"] = (
            rng.randint(2200, 3000) / 1000
        )  # the frame carries mV; keep the percent consistent
        del fields["battery"]
    if driver.kind == "bodycam" and rng.random() < 0.3:
        for name in ("lat", "lon", "accuracy"):
            del fields[name]  # no GPS fix
    events = [e for e in driver.events if rng.random() < 0.3]
    fields.update(seq=rng.randint(0, 2**32 - 1), events=events)
    if rng.random() < 0.5:
        fields["ts"] = rng.randint(946_684_800, 4_102_444_800)
    if rng.random() < 0.5:
        fields["heartbeat"] = rng.random() < 0.5
    return fields


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_random_fields_round_trip(kind: str, fmt: str) -> None:
    driver = get_driver(kind)
    rng = random.Random(f"{kind}-{fmt}")
    for _ in range(300):
        fields = _fields(driver, rng)
        reading = driver.decode(driver.encode(fields, fmt))  # type: ignore[arg-type]
        assert reading.kind == kind
        assert reading.seq == fields["seq"]
        assert reading.ts == fields.get("ts")
        events = list(fields["events"])
        if "forced" in events and "opened" not in events:
            events.insert(0, "opened")
        assert list(reading.events) == events
        assert reading.heartbeat == fields.get("heartbeat", not events)
        for name, value in fields.items():
            if name in driver.metrics:
                assert reading.metrics[name] == pytest.approx(value, abs=STEP.get(name, 0) / 2), name
        assert reading.activity == (
            any(driver.events[e].activity for e in events) or reading.metrics.get("moving") is True
        )


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_mutated_frames_raise_only_decode_errors(kind: str) -> None:
    driver = get_driver(kind)
    rng = random.Random(kind)
    frames = [driver.encode(_fields(driver, rng), "binary") for _ in range(50)]
    rejected = 0
    for _ in range(3000):
        frame = bytearray(rng.choice(frames))
        for bit in rng.sample(range(len(frame) * 8), rng.randint(1, 3)):
            frame[bit // 8] ^= 1 << bit % 8
        try:
            driver.decode(bytes(frame))
        except DecodeError:
            rejected += 1
    # CRC-16/CCITT catches every error of 1-3 distinct bits in frames this short.
    assert rejected == 3000


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_random_bytes_raise_only_decode_errors(kind: str) -> None:
    driver = get_driver(kind)
    rng = random.Random(kind)
    reasons: set[str] = set()
    for _ in range(2000):
        payload = rng.randbytes(rng.randint(0, 40))
        if payload and rng.random() < 0.5:
            payload = rng.choice((b"{", b"\xa3", bytes([driver.magic, 1]))) + payload
        try:
            driver.decode(payload)
        except DecodeError as exc:
            reasons.add(exc.reason)
        else:
            raise AssertionError(f"random bytes decoded: {payload!r}")
    # Each prefix reaches its own parser: JSON, CBOR and the binary frame's CRC check.
    assert {"empty", "bad_json", "bad_cbor", "bad_crc"} <= reasons <= set(REASONS), reasons


def test_too_large_is_refused_before_parsing() -> None:
    driver = get_driver("smoke")
    payload = b'{"battery": 50' + b" " * MAX_PAYLOAD + b"}"
    with pytest.raises(DecodeError) as info:
        driver.decode(payload, DecodeMeta("json"))
    assert info.value.reason == "too_large"
    assert driver.decode(payload[: MAX_PAYLOAD - 1] + b"}").metrics == {"battery": 50}


def test_encode_refuses_what_decode_would() -> None:
    smoke, bodycam = get_driver("smoke"), get_driver("bodycam")
    with pytest.raises(InvalidInput) as info:
        smoke.encode({"humidity": 3})
    assert info.value.field == "humidity"
    with pytest.raises(ValidationFailed) as bad:
        smoke.encode({"battery": 101})
    assert bad.value.reason == "out_of_range"
    with pytest.raises(ValidationFailed) as bad:
        bodycam.encode({"lat": 31.0})
    assert bad.value.reason == "inconsistent"
    with pytest.raises(InvalidInput) as info:
        smoke.encode({"seq": 1, "battery": 50}, "binary")
    assert info.value.field == "smoke"
    with pytest.raises(InvalidInput) as info:
        smoke.encode({"smoke": 0.0, "temperature": 20, "battery": 50, "rssi": -80}, "binary")
    assert info.value.field == "seq"
    with pytest.raises(InvalidInput):
        smoke.encode({"battery": 50}, "xml")  # type: ignore[arg-type]


def test_each_kind_has_its_own_magic() -> None:
    assert len({d.magic for d in ALL}) == len(ALL)
    smoke_frame = get_driver("smoke").encode(
        {"seq": 1, "smoke": 0.0, "temperature": 20, "battery": 50, "rssi": -80}, "binary"
    )
    for driver in ALL:
        if driver.kind != "smoke":
            with pytest.raises(DecodeError) as info:
                driver.decode(smoke_frame)
            assert info.value.reason == "bad_magic"


def test_hostile_nesting_and_numbers_are_decode_errors() -> None:
    smoke = get_driver("smoke")
    nested: list[Any] = [1]
    for _ in range(40):
        nested = [nested]
    hostile = {
        b'{"ev":' + b"[" * 30_000 + b"]" * 30_000 + b"}": "bad_json",  # recursion limit of the JSON parser
        b'{"battery":' + b"9" * 5000 + b"}": "bad_json",  # over Python's int-from-string digit limit
        smoke.encode({"battery": 1}, "cbor")[:-1] + cbor2.dumps(nested): "bad_cbor",  # past depth 16
    }
    for payload, reason in hostile.items():
        with pytest.raises(DecodeError) as info:
            smoke.decode(payload)
        assert info.value.reason == reason
