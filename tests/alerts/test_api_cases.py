"""The cases, rules and households API on both backends: intake, filters, transitions and every bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.app import create_app
from hub.config import Settings
from provisioning.apikeys import create_key
from tests.alerts.test_cases_kit import Town, make_town

WHO = {"actor": "test", "channel": "system"}


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Town, dict[str, dict[str, str]]]]:
    settings = Settings(
        database={"url": database_url}, mqtt={"port": 0}, coap={"enabled": False}, var_dir=tmp_path
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        db = app.state.hub.db
        town = await make_town(db)
        keys: dict[str, dict[str, str]] = {}
        async with db.session() as s:
            for name, role, places, responder in (
                ("admin", "admin", [], None),
                ("ops", "operator", [], None),
                ("grid", "responder", ["T-D-S-C-G"], town.responders["grid_worker"]),
                ("lead", "responder", ["T-D-S-C-G-B"], town.responders["building_leader"]),
                ("elsewhere", "responder", ["T-D-S-C-G-B-U02"], None),
            ):
                _, text = await create_key(
                    s, name=name, role=role, places=places, responder_id=responder, **WHO
                )
                keys[name] = {"Authorization": f"Bearer {text}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client, town, keys


def _problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json() if resp.content else {}
    return body


async def _first_step_done(client: httpx.AsyncClient, code: str, headers: dict[str, str]) -> bool:
    """Poll (bounded) until the case's first escalation step has been run by the ticker."""
    for _ in range(200):
        steps = (await client.get(f"/api/v1/cases/{code}", headers=headers)).json()["steps"]
        if steps[0]["state"] == "done":
            return True
        await asyncio.sleep(0.05)
    return False


async def test_intake_list_show_and_transitions(
    api: tuple[httpx.AsyncClient, Town, dict[str, dict[str, str]]],
) -> None:
    client, _, keys = api
    report = {
        "source": "citizen",
        "category": "citizen_report",
        "place": "T-D-S-C-G-B-U01",
        "description": "the stairwell light is out",
        "reporter_phone": "+86 139 0000 0001",
    }
    made = _problem(await client.post("/api/v1/cases", json=report, headers=keys["ops"]), 201)
    assert made["state"] == "discovered" and made["code"].startswith("C-") and made["reply_due"]
    code = made["code"]
    listed = (await client.get("/api/v1/cases", params={"place": "T-D-S-C-G-B"}, headers=keys["ops"])).json()
    assert [c["code"] for c in listed] == [code]
    assert (await client.get("/api/v1/cases", params={"state": "closed"}, headers=keys["ops"])).json() == []
    shown = _problem(await client.get(f"/api/v1/cases/{code}", headers=keys["grid"]), 200)
    assert shown["timeline"][0]["kind"] == "opened" and [s["role"] for s in shown["steps"]] == [
        "grid_worker",
        "community_duty",
    ]
    # The first step is due at once; the hub's escalation ticker sends it without anyone acting.
    assert await _first_step_done(client, code, keys["ops"])
    # A responder of the neighbour household neither sees nor acts on this case.
    assert (await client.get("/api/v1/cases", headers=keys["elsewhere"])).json() == []
    _problem(await client.post(f"/api/v1/cases/{code}/accept", json={}, headers=keys["elsewhere"]), 403)
    conflict = _problem(
        await client.post(f"/api/v1/cases/{code}/close", json={"note": "x"}, headers=keys["grid"]), 409
    )
    assert "discovered" in conflict["detail"]
    _problem(await client.post(f"/api/v1/cases/{code}/accept", json={}, headers=keys["grid"]), 200)
    second = _problem(await client.post(f"/api/v1/cases/{code}/accept", json={}, headers=keys["lead"]), 409)
    assert "accepted by" in second["detail"]
    _problem(
        await client.post(
            f"/api/v1/cases/{code}/resolve", json={"note": "bulb replaced"}, headers=keys["grid"]
        ),
        200,
    )
    closed = _problem(
        await client.post(f"/api/v1/cases/{code}/close", json={"note": "ok"}, headers=keys["ops"]), 200
    )
    assert closed["state"] == "closed"
    shown = (await client.get(f"/api/v1/cases/{code}", headers=keys["ops"])).json()
    assert [s["state"] for s in shown["steps"]] == ["done", "cancelled"]  # closing cancels what was left
    assert [e["to_state"] for e in shown["timeline"] if e["kind"] == "transition"] == [
        "accepted",
        "resolved",
        "closed",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"place": "NOPE"}, "place"),
        ({"category": "weather"}, "category"),
        ({"source": "robot"}, "source"),
        ({"description": ""}, "description"),
        ({"reporter_phone": "12"}, "reporter_phone"),
    ],
)
async def test_bad_intake(
    api: tuple[httpx.AsyncClient, Town, dict[str, dict[str, str]]], change: dict[str, str], field: str
) -> None:
    client, _, keys = api
    report = {
        "source": "citizen",
        "category": "fire",
        "place": "T-D-S-C-G-B-U01",
        "description": "smoke",
    } | change
    body = _problem(await client.post("/api/v1/cases", json=report, headers=keys["ops"]), 422)
    assert body["field"] == field, body
    assert (await client.get("/api/v1/cases", headers=keys["ops"])).json() == []


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (
            {"kind": "smoke", "type": "threshold", "metric": "heart_rate", "op": ">", "value": 1, "clear": 0},
            "metric",
        ),
        ({"kind": "smoke", "type": "offline", "for_s": -5}, "for_s"),
        ({"kind": "smoke", "type": "offline", "for_s": 0}, "for_s"),
        ({"kind": "smoke", "type": "offline", "place": "NOPE"}, "place"),
        ({"kind": "toaster", "type": "offline"}, "kind"),
    ],
)
async def test_bad_rules(
    api: tuple[httpx.AsyncClient, Town, dict[str, dict[str, str]]], rule: dict[str, Any], field: str
) -> None:
    client, _, keys = api
    body = {"name": "r1", "severity": "major", "category": "fault"} | rule
    problem = _problem(await client.post("/api/v1/rules", json=body, headers=keys["admin"]), 422)
    assert problem["field"] == field, problem
    assert (await client.get("/api/v1/rules", headers=keys["ops"])).json() == []


async def test_rules_crud_and_away(api: tuple[httpx.AsyncClient, Town, dict[str, dict[str, str]]]) -> None:
    client, town, keys = api
    body = {
        "name": "smoke-offline",
        "kind": "smoke",
        "type": "offline",
        "severity": "major",
        "category": "fault",
        "for_s": 300,
        "place": "T-D-S-C-G-B",
    }
    made = _problem(await client.post("/api/v1/rules", json=body, headers=keys["admin"]), 201)
    assert made["rule"]["place"] == town.paths["B"]
    _problem(await client.post("/api/v1/rules", json=body, headers=keys["admin"]), 409)
    _problem(await client.post("/api/v1/rules", json=body, headers=keys["ops"]), 403)
    changed = _problem(
        await client.put(f"/api/v1/rules/{made['id']}", json=body | {"for_s": 600}, headers=keys["admin"]),
        200,
    )
    assert changed["rule"]["for_s"] == 600
    _problem(await client.delete(f"/api/v1/rules/{made['id']}", headers=keys["admin"]), 204)
    _problem(await client.get(f"/api/v1/rules/{made['id']}", headers=keys["ops"]), 404)
    on = _problem(
        await client.put(
            "/api/v1/households/T-D-S-C-G-B-U01/away", json={"away": True}, headers=keys["lead"]
        ),
        200,
    )
    assert on["away"] is True
    listed = (await client.get("/api/v1/households/away", headers=keys["ops"])).json()
    assert [h["household"] for h in listed] == ["T-D-S-C-G-B-U01"]
    _problem(
        await client.put("/api/v1/households/T-D-S-C-G-B/away", json={"away": True}, headers=keys["ops"]), 422
    )
    _problem(
        await client.put(
            "/api/v1/households/T-D-S-C-G-B-U01/away", json={"away": True}, headers=keys["elsewhere"]
        ),
        403,
    )
    _problem(
        await client.put(
            "/api/v1/households/T-D-S-C-G-B-U01/away", json={"away": False}, headers=keys["lead"]
        ),
        200,
    )
    assert (await client.get("/api/v1/households/away", headers=keys["ops"])).json() == []


RULES_YAML = """
rules:
  - name: kitchen-hot
    kind: smoke
    type: threshold
    metric: temperature
    op: ">"
    value: 60
    clear: 50
    for_s: 30
    severity: critical
    category: fire
    place: T-D-S-C-G-B
  - name: door-silent
    kind: door
    type: inactivity
    factor: 3
    severity: major
    category: fault
"""


async def test_rules_import_from_yaml_all_or_nothing(
    api: tuple[httpx.AsyncClient, Town, dict[str, dict[str, str]]],
) -> None:
    client, town, keys = api
    yaml_headers = keys["admin"] | {"content-type": "application/yaml"}
    bad = RULES_YAML.replace("metric: temperature", "metric: humidity")
    refused = _problem(await client.post("/api/v1/rules/import", content=bad, headers=yaml_headers), 422)
    assert refused["field"].startswith("rules[0]") and "humidity" in refused["detail"]
    assert (await client.get("/api/v1/rules", headers=keys["ops"])).json() == []  # nothing stored
    for junk, why in ((b"rules: [", "YAML"), (b"\xff\xfe", "UTF-8"), (b"just text", "list")):
        answer = _problem(await client.post("/api/v1/rules/import", content=junk, headers=yaml_headers), 422)
        assert why in answer["detail"]
    _problem(await client.post("/api/v1/rules/import", content=RULES_YAML, headers=keys["ops"]), 403)
    stored = _problem(
        await client.post("/api/v1/rules/import", content=RULES_YAML, headers=yaml_headers), 201
    )
    assert stored["stored"] == 2
    assert [r["name"] for r in stored["rules"]] == ["kitchen-hot", "door-silent"]
    assert stored["rules"][0]["rule"]["place"] == town.paths["B"]
    # The same file again names the same rules for the same scopes: a conflict, nothing changes.
    again = _problem(await client.post("/api/v1/rules/import", content=RULES_YAML, headers=yaml_headers), 409)
    assert again["field"] == "rules[0].name"
    assert len((await client.get("/api/v1/rules", headers=keys["ops"])).json()) == 2
