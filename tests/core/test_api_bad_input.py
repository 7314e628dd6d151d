"""Bad input answers 422 naming what was wrong, never 500: times, 64-bit integers, JSON syntax, GeoJSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import build_street, enroll
from tests.provisioning.test_auth_kit import Api, running_api

HUGE = "99999999999999999999"
RING = [[114.3, 30.5], [114.4, 30.5], [114.4, 30.6], [114.3, 30.5]]


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The app on SQLite and PostgreSQL, with a street and one smoke sensor SM-1."""
    async with running_api(database_url, tmp_path) as running:
        street = await build_street(running.hub.db, households=1)
        await enroll(running.hub.db, "SM-1", "smoke", street.households[0])
        await running.hub.ingest.directory.load_all()
        yield running


def assert_names(response: Any, field: str, *words: str) -> dict[str, Any]:
    """A 422 problem whose ``field`` is ``field`` and whose detail holds ``words``."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["field"] == field, body
    for word in words:
        assert word in body["detail"], body
    assert "pydantic.dev" not in response.text
    return body


@pytest.mark.parametrize(
    "when", ["0001-01-01T00:00:00Z", "2262-04-12T00:00:00Z", "9999-12-31T23:59:59+08:00"]
)
@pytest.mark.parametrize("name", ["start", "end"])
async def test_telemetry_time_outside_64_bit_nanoseconds(api: Api, name: str, when: str) -> None:
    response = await api.client.get(
        "/api/v1/devices/SM-1/telemetry", params={"metric": "battery", name: when}, headers=api.auth()
    )
    assert_names(response, name, "1678-01-01", "2262-01-01")


async def test_telemetry_huge_bucket(api: Api) -> None:
    response = await api.client.get(
        "/api/v1/devices/SM-1/telemetry", params={"metric": "battery", "every": "1e300"}, headers=api.auth()
    )
    assert_names(response, "every")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (f"/api/v1/places?offset={HUGE}", "offset"),
        (f"/api/v1/devices?after_id=-{HUGE}", "after_id"),
        (f"/api/v1/devices?after_id={HUGE}", "after_id"),
        (f"/api/v1/audit?before_id={HUGE}", "before_id"),
        (f"/api/v1/cases?offset={HUGE}", "offset"),
        (f"/api/v1/responders?offset={HUGE}", "offset"),
        (f"/api/v1/responders/{HUGE}", "responder_id"),
        (f"/api/v1/responders/-{HUGE}", "responder_id"),
        (f"/api/v1/rules/{HUGE}", "rule_id"),
        (f"/api/v1/devices/{HUGE}", "device_id"),
        (f"/api/v1/devices/SM-1/commands/{HUGE}", "cid"),
    ],
)
async def test_integers_beyond_64_bits(api: Api, path: str, field: str) -> None:
    # Row ids are 32-bit (PostgreSQL INTEGER), offsets 64-bit: the detail names the bound.
    assert_names(
        await api.client.get(path, headers=api.auth()), field, "2147483" if "_id" in field else "922337"
    )


async def test_integers_beyond_64_bits_in_bodies(api: Api) -> None:
    key = {"name": "x", "role": "operator", "responder_id": int(HUGE)}
    assert_names(await api.client.post("/api/v1/keys", json=key, headers=api.auth()), "responder_id")
    state = await api.client.post(
        f"/api/v1/devices/{HUGE}/state", json={"state": "active"}, headers=api.auth()
    )
    assert_names(state, "device_id")


async def test_edges_of_the_bounds_are_answered(api: Api) -> None:
    """The largest id a column holds is simply not found; one more is 422; the largest offset lists nothing."""
    for path in ("/api/v1/devices/2147483647", "/api/v1/rules/-2147483648", "/api/v1/responders/2147483647"):
        assert (await api.client.get(path, headers=api.auth())).status_code == 404, path
    assert_names(await api.client.get("/api/v1/devices/2147483648", headers=api.auth()), "device_id")
    for path in ("/api/v1/places", "/api/v1/cases", "/api/v1/responders"):
        listed = await api.client.get(f"{path}?offset=9223372036854775807", headers=api.auth())
        assert listed.status_code == 200 and listed.json() == [], listed.text
    audit = await api.client.get("/api/v1/audit?before_id=-2147483648", headers=api.auth())
    assert audit.status_code == 200 and audit.json() == []


async def test_malformed_json_names_the_body_and_the_position(api: Api) -> None:
    raw = b'{"name": "x", "role": "admin",,}'
    response = await api.client.post(
        "/api/v1/keys", content=raw, headers=api.auth() | {"Content-Type": "application/json"}
    )
    body = assert_names(response, "body", "invalid JSON", "character 30")
    assert body["errors"] == [{"field": "body", "in": "body", "message": body["detail"].split(": ", 1)[1]}]


@pytest.mark.parametrize(
    ("outline", "words"),
    [
        (
            {
                "type": "Polygon",
                "coordinates": [[["114.3", "30.5"], [114.4, 30.5], [114.4, 30.6], [114.3, 30.5]]],
            },
            ["coordinates[0][0][0]", "must be a number"],
        ),
        ({"type": "Pointy", "coordinates": [RING]}, ["Polygon or MultiPolygon", "Pointy"]),
        ({"type": "Polygon", "coordinates": [RING[:3]]}, ["coordinates[0]", "at least 4 positions"]),
        ({"type": "Polygon", "coordinates": [[*RING[:3], [114.0, 30.0]]]}, ["does not end where it starts"]),
        (
            {
                "type": "Polygon",
                "coordinates": [[[214.3, 30.5], [114.4, 30.5], [114.4, 30.6], [214.3, 30.5]]],
            },
            ["214.3", "longitude, latitude"],
        ),
        ({"type": "MultiPolygon", "coordinates": [RING]}, ["coordinates[0][0]"]),
        ({"type": "Polygon", "coordinates": []}, ["no ring"]),
        ("POLYGON((0 0, 1 0, 1 1, 0 0))", ["outline"]),
    ],
)
async def test_outline_must_be_geojson(api: Api, outline: Any, words: list[str]) -> None:
    create = {"code": "G-NEW", "level": "district", "name": "新区", "outline": outline}
    assert_names(await api.client.post("/api/v1/places", json=create, headers=api.auth()), "outline", *words)
    patch = await api.client.patch("/api/v1/places/T-D", json={"outline": outline}, headers=api.auth())
    assert_names(patch, "outline", *words)


async def test_good_outlines_are_stored_as_geojson(api: Api) -> None:
    for outline in (
        {"type": "Polygon", "coordinates": [RING]},
        {"type": "MultiPolygon", "coordinates": [[RING], [RING]]},
    ):
        response = await api.client.patch("/api/v1/places/T-D", json={"outline": outline}, headers=api.auth())
        assert response.status_code == 200, response.text
        assert response.json()["outline"] == outline


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "word"),
    [
        ("GET", "/api/v1/places/D1%00x", None, "code", "NUL"),
        ("GET", "/api/v1/places?q=a%00b", None, "q", "NUL"),
        ("GET", "/api/v1/devices/SM%00/telemetry?metric=battery", None, "serial", "NUL"),
        ("POST", "/api/v1/keys", {"name": "a\x00b", "role": "operator"}, "name", "NUL"),
        (
            "POST",
            "/api/v1/keys",
            {"name": "ops", "role": "operator", "places": ["T-D", "\x00"]},
            "places.1",
            "NUL",
        ),
        ("POST", "/api/v1/places", {"code": "X", "level": "district", "name": "\udc00"}, "name", "surrogate"),
        ("PATCH", "/api/v1/places/T-D", {"contacts": [{"name": "李\x00"}]}, "contacts.0.name", "NUL"),
    ],
)
async def test_text_no_database_stores_is_refused_by_name(
    api: Api, method: str, path: str, body: Any, field: str, word: str
) -> None:
    """NUL characters and lone surrogates: 422 naming the field on both backends (PostgreSQL answered 500)."""
    content = None if body is None else json.dumps(body).encode()
    headers = api.auth() | {"Content-Type": "application/json"}
    response = await api.client.request(method, path, content=content, headers=headers)
    assert_names(response, field, word)


async def test_a_value_the_database_refuses_is_422_not_500(api: Api) -> None:
    """The last net: a raw CSV import with a NUL character, which PostgreSQL cannot store (SQLite can)."""
    csv = "code,level,name,parent\nT-D-X,street,街\x00道,T-D\n".encode()
    response = await api.client.post(
        "/api/v1/places/import?format=csv", content=csv, headers=api.auth() | {"Content-Type": "text/csv"}
    )
    if api.hub.db.is_sqlite:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 422, response.text
        assert "NUL" in response.json()["detail"]
