"""Shared helpers (no tests): a street of two communities, NORTH and SOUTH, with something of every kind in each.

Everything is made through the API as an operator would (so the audit trail names it too), except readings and
refused uplinks, which go through the real ingest pipeline. Every text of a side carries the side's name.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass, field
from typing import Any

import httpx

from drivers import DRIVERS
from hub.app import Hub
from hub.errors import DecodeError

__all__ = ["SIDES", "Side", "build_two_communities"]

SIDES = ("NORTH", "SOUTH")


@dataclass
class Side:
    """What one community holds: codes, serials, ids, and every text that must not leak to the other side."""

    name: str
    community: str
    grid: str
    households: list[str]
    serials: list[str]
    device_ids: list[int] = field(default_factory=list)
    responder_ids: list[int] = field(default_factory=list)
    case_codes: list[str] = field(default_factory=list)
    case_ids: list[int] = field(default_factory=list)
    rule_ids: list[int] = field(default_factory=list)
    command_ids: list[int] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)

    def markers(self) -> list[str]:
        """Strings only this side's data contains (compared case-insensitively)."""
        b64 = [base64.b64encode(p).decode() for p in self.payloads]
        return [
            self.name.lower(),
            *self.case_codes,
            *self.phones,
            *(p.lstrip("+") for p in self.phones),
            *b64,
        ]


def _ok(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.text}"
    )
    body: dict[str, Any] = response.json()
    return body


async def _places(http: httpx.AsyncClient, side: Side, street: str) -> None:
    b = f"{side.grid}-B1"
    rows = [
        (side.community, "community", street),
        (side.grid, "grid", side.community),
        (b, "building", side.grid),
    ]
    rows += [(h, "household", b) for h in side.households]
    for code, level, parent in rows:
        body = {"code": code, "level": level, "name": f"{side.name} {level}", "parent": parent}
        _ok(await http.post("/api/v1/places", json=body))


async def _people_and_cases(http: httpx.AsyncClient, side: Side, n: int) -> None:
    phone = f"+861390000{n:04d}"
    side.phones.append(phone)
    responder = {
        "name": f"{side.name} grid worker",
        "phone": phone,
        "role": "grid_worker",
        "places": [side.grid],
    }
    side.responder_ids.append(_ok(await http.post("/api/v1/responders", json=responder))["id"])
    report = {
        "source": "citizen",
        "category": "citizen_report",
        "place": side.households[0],
        "description": f"{side.name}: the stairwell light is out",
        "reporter_phone": f"+861380000{n:04d}",
    }
    case = _ok(await http.post("/api/v1/cases", json=report))
    side.case_codes.append(case["code"])
    side.case_ids.append(case["id"])
    rule = {"severity": "major", "category": "fault", "kind": "smoke", "type": "offline", "for_s": 300}
    for scope in ({"place": side.grid}, {"device": side.serials[0]}):
        made = _ok(
            await http.post(
                "/api/v1/rules", json=rule | scope | {"name": f"{side.name.lower()}-{len(scope)}"}
            )
        )
        side.rule_ids.append(made["id"])
    policy = {
        "name": f"{side.name.lower()}-policy",
        "place": side.community,
        "steps": [{"role": "grid_worker", "channel": "sms", "wait_s": 60}],
    }
    _ok(await http.put("/api/v1/escalation-policies", json=policy), 200)
    key = {"name": f"{side.name} technician", "role": "technician", "places": [side.community]}
    _ok(await http.post("/api/v1/keys", json=key))
    away = {"away": True, "note": f"{side.name} family travelling"}
    _ok(await http.put(f"/api/v1/households/{side.households[1]}/away", json=away), 200)


async def _traffic(http: httpx.AsyncClient, hub: Hub, side: Side) -> None:
    for serial, kind, household in zip(side.serials, ("smoke", "panic_button"), side.households, strict=True):
        made = _ok(
            await http.post("/api/v1/devices", json={"serial": serial, "kind": kind, "household": household})
        )
        side.device_ids.append(made["device"]["id"] if "device" in made else made["id"])
    await hub.ingest.directory.load_all()
    device = hub.ingest.directory.get(side.serials[0])
    assert device is not None
    hub.ingest.pipeline.accept(device, DRIVERS["smoke"].encode({"seq": 1, "battery": 88}), "mqtt")
    raw = f"{side.name}-RAW-UPLINK".encode()
    side.payloads.append(raw)
    with contextlib.suppress(DecodeError):
        hub.ingest.pipeline.accept(device, raw, "mqtt")
    command = await http.post(f"/api/v1/devices/{side.serials[0]}/commands", json={"name": "self_test"})
    assert command.status_code in (200, 202), command.text
    side.command_ids.append(command.json()["cid"])


async def build_two_communities(http: httpx.AsyncClient, hub: Hub) -> dict[str, Side]:
    """District D-CITY → street S-MAIN → communities C-NORTH and C-SOUTH, each with everything; ``http`` is admin."""
    _ok(await http.post("/api/v1/places", json={"code": "D-CITY", "level": "district", "name": "city"}))
    _ok(
        await http.post(
            "/api/v1/places",
            json={"code": "S-MAIN", "level": "street", "name": "main street", "parent": "D-CITY"},
        )
    )
    sides = {}
    for n, name in enumerate(SIDES, 1):
        grid = f"C-{name}-G1"
        side = Side(
            name=name,
            community=f"C-{name}",
            grid=grid,
            households=[f"{grid}-B1-U1", f"{grid}-B1-U2"],
            serials=[f"{name}-SM-1", f"{name}-PB-1"],
        )
        await _places(http, side, "S-MAIN")
        await _traffic(http, hub, side)
        await _people_and_cases(http, side, n)
        sides[name] = side
    # An uplink from a device nobody enrolled belongs to no community: no limited key may see it.
    hub.ingest.pipeline.refuse(
        "mqtt", "STRANGER-9", "unknown_device", "no device with this serial", b"stranger"
    )
    return sides
