"""Line-protocol encoder: escaping vectors, types, refusals, and a round trip through a real InfluxDB."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from hub.errors import InvalidInput
from hub.telemetry import LineEncoder, TelemetryPoint, encode_points
from tests.servers.influxdb import InfluxServer


def _line(kind: str, device: str, fields: dict[str, Any], tags: dict[str, str] | None = None) -> str:
    return LineEncoder().encode(TelemetryPoint(device, kind, 1.5, fields, tags or {}))


VECTORS = [
    # (kind, device, tags, fields, expected line)
    ("smoke", "d1", {}, {"v": 1.0}, "smoke,device_id=d1 v=1.0 1500000000"),
    ("door sensor", "a,b", {}, {"v": 2.5}, "door\\ sensor,device_id=a\\,b v=2.5 1500000000"),
    ("m=x", "k=v", {}, {"f k": 1.0}, "m=x,device_id=k\\=v f\\ k=1.0 1500000000"),
    ("m", "d", {"place": "A 1"}, {"n": 3}, "m,device_id=d,place=A\\ 1 n=3i 1500000000"),
    (
        "m",
        "d",
        {"zone": "z", "a": "1"},
        {"on": True, "off": False},
        "m,a=1,device_id=d,zone=z on=true,off=false 1500000000",
    ),
    ("m", "d", {"empty": ""}, {"s": 'say "hi" \\ bye'}, 'm,device_id=d s="say \\"hi\\" \\\\ bye" 1500000000'),
    ("m", "c:\\x", {}, {"v": 1e20}, "m,device_id=c:\\x v=1e+20 1500000000"),
    (
        "m",
        "d",
        {},
        {"big": 2**63 - 1, "neg": -(2**63)},
        f"m,device_id=d big={2**63 - 1}i,neg={-(2**63)}i 1500000000",
    ),
    ("m", "中文", {}, {"s": "a\nb"}, 'm,device_id=中文 s="a\nb" 1500000000'),
]


@pytest.mark.parametrize(("kind", "device", "tags", "fields", "expected"), VECTORS)
def test_vectors(kind: str, device: str, tags: dict[str, str], fields: dict[str, Any], expected: str) -> None:
    assert _line(kind, device, fields, tags) == expected


@pytest.mark.parametrize(
    ("kind", "device", "fields"),
    [
        ("m", "d", {"v": math.nan}),
        ("m", "d", {"v": math.inf}),
        ("m", "d", {"v": 2**63}),
        ("m", "d", {}),
        ("m", "d\\", {"v": 1.0}),
        ("m", "d\n", {"v": 1.0}),
        ("#m", "d", {"v": 1.0}),
        ("", "d", {"v": 1.0}),
        ("m", "d", {"time": 1.0}),
        ("m", "d", {"v": [1]}),
    ],
)
def test_refusals(kind: str, device: str, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        _line(kind, device, fields)


def test_timestamp_in_nanoseconds_and_batch_newlines() -> None:
    points = [
        TelemetryPoint("d", "m", 1_700_000_000.123456, {"v": 1}),
        TelemetryPoint("d", "m", 2.0, {"v": 2}),
    ]
    assert encode_points(points) == "m,device_id=d v=1i 1700000000123456000\nm,device_id=d v=2i 2000000000\n"


def test_round_trip_through_influxdb(influxdb: InfluxServer, influx_database: str) -> None:
    """What the encoder escapes, InfluxDB 1.x stores back exactly."""
    device = 'we ird,=\\dev"ice'
    value = 'quo"te \\ back\\slash, comma=eq\nnewline'
    point = TelemetryPoint(device, "kind with space,comma", 3.0, {"s k,=": value, "n": 7}, {"pl ace": "东 1"})
    line = LineEncoder().encode(point)
    resp = httpx.post(f"{influxdb.url}/write", params={"db": influx_database}, content=line.encode())
    assert resp.status_code == 204, resp.text
    result = influxdb.query('SELECT * FROM "kind with space,comma"', db=influx_database)
    series = result["results"][0]["series"][0]
    row = dict(zip(series["columns"], series["values"][0], strict=True))
    assert row["device_id"] == device
    assert row["pl ace"] == "东 1"
    assert row["s k,="] == value
    assert row["n"] == 7
