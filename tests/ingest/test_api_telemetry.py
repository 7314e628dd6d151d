"""Telemetry, device status and dead letters through the HTTP API, with role and place checks."""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from drivers import DRIVERS
from hub.app import Hub, create_app
from hub.errors import DecodeError
from provisioning.apikeys import create_key
from tests.clocks import ManualClock
from tests.fleet import build_street, enroll, hub_settings

T0 = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], ManualClock]]:
    """The app on a fresh database with a street, two devices and keys for each role used."""
    settings = hub_settings(database_url, tmp_path)
    from hub.app import build_hub

    clock = ManualClock(T0)
    hub = build_hub(settings, clock=clock)
    app = create_app(settings, hub)
    with TestClient(app) as http:
        keys = http.portal.call(_prepare, hub)  # type: ignore[union-attr]
        yield http, keys, clock


async def _prepare(hub: Hub) -> dict[str, str]:
    db = hub.db
    street = await build_street(db, households=2)
    await enroll(db, "SM-1", "smoke", street.households[0])
    await enroll(db, "DR-2", "door", street.households[1])
    keys = {}
    async with db.session() as session:
        for role, places in (
            ("operator", []),
            ("technician", [street.households[0]]),
            ("responder", [street.households[1]]),
        ):
            _key, text = await create_key(
                session, name=role, role=role, places=places, actor="test", channel="cli"
            )
            keys[role] = text
    await hub.ingest.directory.load_all()
    return keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def feed(http: TestClient, clock: ManualClock) -> None:
    """Three battery readings of SM-1, one a minute, through the real pipeline."""
    hub = http.app.state.hub  # type: ignore[attr-defined]
    device = hub.ingest.directory.get("SM-1")
    for n, battery in enumerate((90, 80, 70)):
        clock.now = T0 + dt.timedelta(minutes=n)
        hub.ingest.pipeline.accept(
            device, DRIVERS["smoke"].encode({"seq": n + 1, "battery": battery}), "mqtt"
        )
    with pytest.raises(DecodeError):
        hub.ingest.pipeline.accept(device, b"\x00garbage", "mqtt")


def test_query_raw_and_bucketed(client: tuple[TestClient, dict[str, str], ManualClock]) -> None:
    http, keys, clock = client
    feed(http, clock)
    window = {
        "metric": "battery",
        "start": (T0 - dt.timedelta(hours=1)).isoformat(),
        "end": (T0 + dt.timedelta(hours=1)).isoformat(),
    }
    raw = http.get("/api/v1/devices/SM-1/telemetry", params=window, headers=auth(keys["operator"]))
    assert raw.status_code == 200, raw.text
    assert [v for _t, v in raw.json()["samples"]] == [90, 80, 70]
    assert raw.json()["unit"] == "%"
    buckets = http.get(
        "/api/v1/devices/SM-1/telemetry", params={**window, "every": 3600}, headers=auth(keys["operator"])
    )
    assert [v for _t, v in buckets.json()["samples"]] == [80]


def test_status_and_dead_letters(client: tuple[TestClient, dict[str, str], ManualClock]) -> None:
    http, keys, clock = client
    feed(http, clock)
    status = http.get("/api/v1/devices/SM-1/status", headers=auth(keys["technician"])).json()
    assert status["online"] is True and status["battery"] == 70 and status["last_seq"] == 3
    assert dt.datetime.fromisoformat(status["last_seen"]) == T0 + dt.timedelta(minutes=2)
    never = http.get("/api/v1/devices/DR-2/status", headers=auth(keys["operator"])).json()
    assert never["online"] is False and never["last_seen"] is None
    letters = http.get("/api/v1/ingest/dead-letters", headers=auth(keys["operator"])).json()
    assert letters["total"] == 1 and letters["items"][0]["device"] == "SM-1"
    assert letters["items"][0]["reason"] == "unknown_format"
    assert base64.b64decode(letters["items"][0]["payload_b64"]) == b"\x00garbage"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"metric": "smoke_density"}, "metric"),
        (
            {"metric": "battery", "start": "2026-11-28T09:00:00+00:00", "end": "2026-11-28T08:00:00+00:00"},
            "start",
        ),
        ({"metric": "battery", "start": "2026-11-28T08:00:00"}, "start"),
        ({"metric": "battery", "every": 0.001}, "every"),
        ({"metric": "battery", "every": -5}, "every"),
    ],
)
def test_bad_queries_name_the_field(
    client: tuple[TestClient, dict[str, str], ManualClock], params: dict[str, object], field: str
) -> None:
    http, keys, _clock = client
    answer = http.get("/api/v1/devices/SM-1/telemetry", params=params, headers=auth(keys["operator"]))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == field


def test_auth_roles_and_places(client: tuple[TestClient, dict[str, str], ManualClock]) -> None:
    http, keys, _clock = client
    url = "/api/v1/devices/SM-1/status"
    missing = http.get(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert http.get(url, headers=auth("hub_nope_nope")).status_code == 401
    # The responder's key is limited to the other household: it may not read this device.
    assert http.get(url, headers=auth(keys["responder"])).status_code == 403
    assert http.get("/api/v1/devices/DR-2/status", headers=auth(keys["responder"])).status_code == 200
    # Dead letters are for staff only.
    assert http.get("/api/v1/ingest/dead-letters", headers=auth(keys["responder"])).status_code == 403
    unknown = http.get("/api/v1/devices/NOPE/status", headers=auth(keys["operator"]))
    assert unknown.status_code == 404 and unknown.json()["title"] == "not_found"


def test_a_refusal_names_the_place_by_its_code(
    client: tuple[TestClient, dict[str, str], ManualClock],
) -> None:
    http, keys, _clock = client
    for url in ("/api/v1/devices/SM-1/status", "/api/v1/devices/SM-1/telemetry?metric=battery"):
        refused = http.get(url, headers=auth(keys["responder"]))
        assert refused.status_code == 403, refused.text
        detail = refused.json()["detail"]
        # Places as people know them, never the id path ("/49/50/…/"): the key's own household (U02), and not
        # the one the device lies in, which a key limited elsewhere has no business learning (issue 12 §4).
        assert "T-D-S-C-G-B-U02" in detail and "U01" not in detail and not re.search(r"/\d+/", detail), detail
