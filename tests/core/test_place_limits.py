"""Nobody reads outside their places: every GET endpoint, walked with a key of each role limited to one community.

The endpoints come from the app's own OpenAPI document, so a new GET endpoint is walked without touching this
test (an unknown path parameter fails it until it is given the other community's values below). Path
parameters are filled with the OTHER community's codes, serials and ids, filters with its codes; no answer
may carry anything of it beyond what the request itself named. The live stream is read too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from drivers import DRIVERS
from hub.app import Hub, build_hub, create_app
from hub.netutil import bind_tcp
from provisioning.apikeys import create_key
from tests.core.two_communities import Side, build_two_communities
from tests.fleet import hub_settings

ROLES = ("technician", "operator", "responder", "integrator", "admin")
STREAM = "/api/v1/events"


@dataclass
class Street:
    """The served app, the hub behind it, the two sides, and a key per role limited to NORTH."""

    http: httpx.AsyncClient
    hub: Hub
    sides: dict[str, Side]
    keys: dict[str, str]
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(10))


@pytest.fixture
async def street(database_url: str, tmp_path: Path) -> AsyncIterator[Street]:
    hub = build_hub(hub_settings(database_url, tmp_path))
    await hub.start()
    sock = bind_tcp("127.0.0.1", 0, fallback=False, setting="test")
    server = uvicorn.Server(
        uvicorn.Config(create_app(hub.settings, hub), log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="test-uvicorn")
    try:
        async with hub.db.session() as session:
            _, admin = await create_key(session, name="root", role="admin", actor="test", channel="cli")
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        headers = {"Authorization": f"Bearer {admin}"}
        async with httpx.AsyncClient(base_url=base, timeout=20, headers=headers) as http:
            sides = await build_two_communities(http, hub)
            keys = {}
            for role in ROLES:
                body = {"name": f"north-{role}", "role": role, "places": [sides["NORTH"].community]}
                made = await http.post("/api/v1/keys", json=body)
                assert made.status_code == 201, made.text
                keys[role] = made.json()["key"]
            async with httpx.AsyncClient(base_url=base, timeout=20) as anonymous:
                yield Street(anonymous, hub, sides, keys)
    finally:
        server.should_exit = True
        await serving
        await hub.stop()


def path_values(other: Side) -> dict[str, list[str]]:
    """What each path parameter is filled with: the other side's objects."""
    return {
        "code": [other.community, other.grid, other.households[0]],
        "serial": other.serials,
        "device_id": [str(i) for i in other.device_ids],
        "responder_id": [str(i) for i in other.responder_ids],
        "rule_id": [str(i) for i in other.rule_ids],
        "ref": [*other.case_codes, *(str(i) for i in other.case_ids)],
        "cid": [str(i) for i in other.command_ids],
    }


def query_values(other: Side) -> dict[str, list[str]]:
    """Filters that name the other side (each tried alone); ``metric`` is required by telemetry."""
    return {
        "place": [other.community],
        "root": [other.community],
        "parent": [other.community],
        "device": [other.serials[0]],
        "q": [other.name],
        "object_id": [other.serials[0], other.community],
        "format": ["yaml"],
    }


def requests_for(path: str, op: dict[str, Any], other: Side) -> list[tuple[str, dict[str, str], list[str]]]:
    """(url, query, values the request itself carries) for one GET operation."""
    params = op.get("parameters", [])
    names = [p["name"] for p in params if p["in"] == "path"]
    fills = path_values(other)
    unknown = [n for n in names if n not in fills]
    assert not unknown, (
        f"GET {path}: give path parameter(s) {unknown} the other community's values in this test"
    )
    required = {p["name"]: "battery" for p in params if p["in"] == "query" and p.get("required")}
    filters = query_values(other)
    variants = [dict(required)]
    variants += [
        required | {p["name"]: v} for p in params if p["in"] == "query" for v in filters.get(p["name"], [])
    ]
    out = []
    for combo in itertools.product(*(fills[n] for n in names)):
        url = path
        for name, value in zip(names, combo, strict=True):
            url = url.replace("{" + name + "}", value)
        out += [(url, query, [*combo, *query.values()]) for query in variants]
    return out


def leaks(text: str, other: Side, echoed: list[str]) -> list[str]:
    """The other side's markers found in ``text`` once what the request itself named is taken out."""
    rest = text.lower()
    for value in sorted(echoed, key=len, reverse=True):
        rest = rest.replace(value.lower(), "")
        rest = rest.replace(json.dumps(value).strip('"').lower(), "")
    return [m for m in other.markers() if m.lower() in rest]


async def read_stream(street: Street, key: str, mine: Side, other: Side) -> str:
    """The live stream as a NORTH operator sees it while both sides send readings (bounded: until ours shows)."""
    seen = ""
    headers = {"Authorization": f"Bearer {key}"}
    async with street.http.stream("GET", STREAM, headers=headers) as stream:
        if stream.status_code != 200:
            return (await stream.aread()).decode()
        lines = stream.aiter_lines()
        await anext(lines)
        for side in (other, mine, other, mine):
            device = street.hub.ingest.directory.get(side.serials[0])
            assert device is not None
            payload = DRIVERS["smoke"].encode({"seq": next(street.seq), "battery": 70})
            street.hub.ingest.pipeline.accept(device, payload, "mqtt")
        async with asyncio.timeout(10):
            async for line in lines:
                seen += line + "\n"
                if seen.count(mine.serials[0]) >= 2:
                    break
    return seen


async def test_limited_keys_read_nothing_of_the_other_community(street: Street) -> None:
    mine, other = street.sides["NORTH"], street.sides["SOUTH"]
    schema = (await street.http.get("/openapi.json")).json()
    gets = {path: ops["get"] for path, ops in schema["paths"].items() if "get" in ops}
    assert {"/api/v1/ingest/dead-letters", STREAM, "/api/v1/places/export", "/api/v1/audit"} <= set(gets)
    found: list[str] = []
    for role, key in street.keys.items():
        headers = {"Authorization": f"Bearer {key}"}
        streamed = await read_stream(street, key, mine, other) if role in ("operator", "admin") else ""
        if role == "operator":
            assert mine.serials[0] in streamed, streamed  # the stream works, and shows NORTH
        found += [f"{role} GET {STREAM}: {m}" for m in leaks(streamed, other, [])]
        for path, op in gets.items():
            if path == STREAM:
                continue
            for url, query, echoed in requests_for(path, op, other):
                response = await street.http.get(url, params=query, headers=headers)
                where = f"{role} GET {url} {query or ''} → {response.status_code}"
                assert response.status_code < 500, f"{where}: {response.text}"
                if "{" in path and response.status_code < 300:
                    found.append(f"{where}: answered for the other community's object")
                found += [f"{where}: {m}" for m in leaks(response.text, other, echoed)]
    assert not found, "\n".join(found)


async def test_the_walk_sees_what_it_may(street: Street) -> None:
    """The same keys read their own community: the walk above proves something, not an API that shows nothing."""
    mine = street.sides["NORTH"]
    tech = {"Authorization": f"Bearer {street.keys['technician']}"}
    letters = (await street.http.get("/api/v1/ingest/dead-letters", headers=tech)).json()
    assert [item["device"] for item in letters["items"]] == [mine.serials[0]]
    ops = {"Authorization": f"Bearer {street.keys['operator']}"}
    cases = (await street.http.get("/api/v1/cases", headers=ops)).json()
    assert [c["code"] for c in cases] == mine.case_codes
    responders = (await street.http.get("/api/v1/responders", headers=ops)).json()
    assert [r["id"] for r in responders] == mine.responder_ids
    device = await street.http.get(f"/api/v1/devices/{mine.device_ids[0]}", headers=tech)
    assert device.status_code == 200 and device.json()["serial"] == mine.serials[0]
    export = await street.http.get("/api/v1/places/export", params={"format": "csv"}, headers=ops)
    assert export.status_code == 200 and mine.grid in export.text
