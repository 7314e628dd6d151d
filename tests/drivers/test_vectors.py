"""Run every test vector of every driver: good payloads to readings, bad payloads to reason keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers import DRIVERS, get_driver
from drivers.base import DecodeMeta, Reading
from drivers.codec import sniff
from hub.errors import DecodeError, ValidationFailed

VECTORS = Path(__file__).parent / "vectors"
ERRORS = {"DecodeError": DecodeError, "ValidationFailed": ValidationFailed}


def _load() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted(VECTORS.glob("*.yaml"))}


def _payload(vector: dict[str, Any]) -> bytes:
    if "json" in vector:
        return str(vector["json"]).encode()
    return bytes.fromhex(str(vector["hex"]).replace(" ", ""))


def _cases(section: str) -> list[Any]:
    return [
        pytest.param(doc["kind"], vector, id=f"{doc['kind']}: {vector['description']}")
        for doc in _load().values()
        for vector in doc[section]
    ]


def _crc16_ccitt_false(data: bytes) -> int:
    """Bitwise CRC-16/CCITT-FALSE, written out as firmware would, to check the documented algorithm."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@pytest.mark.parametrize(("kind", "vector"), _cases("examples"))
def test_example_decodes_to_expected_reading(kind: str, vector: dict[str, Any]) -> None:
    expected = vector["reading"]
    reading = get_driver(kind).decode(_payload(vector), DecodeMeta(vector.get("fmt", "auto")))
    assert reading == Reading(
        kind=kind,
        seq=expected["seq"],
        ts=expected["ts"],
        metrics=expected["metrics"],
        events=tuple(expected["events"]),
        activity=expected["activity"],
        heartbeat=expected["heartbeat"],
    )
    # Types matter to the telemetry store: an int metric must not come back as a float, or the reverse.
    for name, value in reading.metrics.items():
        assert type(value) is type(expected["metrics"][name]), name


@pytest.mark.parametrize(("kind", "vector"), _cases("bad"))
def test_bad_payload_raises_reason(kind: str, vector: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as info:
        get_driver(kind).decode(_payload(vector), DecodeMeta(vector.get("fmt", "auto")))
    assert info.value.reason == vector["reason"]
    assert type(info.value) is ERRORS[vector["error"]]


def test_every_driver_has_vectors_in_every_format_and_for_every_event() -> None:
    docs = _load()
    assert set(docs) == set(DRIVERS)
    for kind, doc in docs.items():
        assert doc["kind"] == kind
        seen_formats = {sniff(_payload(v)) for v in doc["examples"]}
        assert seen_formats == {"json", "cbor", "binary"}, kind
        seen_events = {e for v in doc["examples"] for e in v["reading"]["events"]}
        assert seen_events == set(DRIVERS[kind].events), kind
        assert doc["bad"], kind


def test_binary_vectors_carry_a_ccitt_false_crc() -> None:
    assert _crc16_ccitt_false(b"123456789") == 0x29B1  # the catalogued check value
    frames = [_payload(v) for doc in _load().values() for v in doc["examples"] if "hex" in v]
    frames = [f for f in frames if sniff(f) == "binary"]
    assert len(frames) >= 16
    for frame in frames:
        assert _crc16_ccitt_false(frame[:-2]) == int.from_bytes(frame[-2:], "big")
