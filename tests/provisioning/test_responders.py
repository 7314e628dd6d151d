"""Responders: phone validation, places, duty hours, and who answers for a place, on both backends."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hub.db import Database
from hub.db.people import Responder
from hub.errors import Conflict, InvalidInput
from provisioning import placefile, responders
from provisioning.responders import DutyWindow, ResponderData, normalise_phone, on_duty
from tests.provisioning.test_auth_kit import running_api

WHO = {"actor": "test", "channel": "system"}
TREE = b"""code,level,name,parent
D01,district,district,
S01,street,street,D01
C01,community,community,S01
G01,grid,grid one,C01
G02,grid,grid two,C01
B01,building,building one,G01
U0101,household,flat 101,B01
"""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+86 138 0013 8000", "+8613800138000"),
        ("0086-138-0013-8000", "+8613800138000"),
        ("+44 (20) 7946 0958", "+442079460958"),
    ],
)
def test_phones_are_normalised(raw: str, expected: str) -> None:
    """Spaces, dashes and brackets go; a leading 00 becomes +."""
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize(
    "raw", ["13800138000", "+0 138 0013 8000", "+8613", "+86138001380001234", "+86 138 abc"]
)
def test_bad_phones_are_refused(raw: str) -> None:
    """No +, a country code starting with 0, too short, too long, or letters: all refused."""
    with pytest.raises(ValueError, match=r"E\.164"):
        normalise_phone(raw)


def test_duty_windows_in_shanghai_time() -> None:
    """A weekday window and an overnight window hold Shanghai times; on_duty converts other zones first."""
    day = DutyWindow(days=[1, 2, 3, 4, 5], start="08:00", end="18:00")
    night = DutyWindow(days=[5], start="20:00", end="08:00")
    shanghai = dt.timezone(dt.timedelta(hours=8))
    monday_9 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=shanghai)
    assert day.covers(monday_9) and not day.covers(monday_9.replace(hour=18))
    assert night.covers(dt.datetime(2026, 3, 6, 23, 0, tzinfo=shanghai))  # Friday night
    assert night.covers(dt.datetime(2026, 3, 7, 7, 59, tzinfo=shanghai))  # Saturday morning
    assert not night.covers(dt.datetime(2026, 3, 7, 23, 0, tzinfo=shanghai))
    # on_duty converts any zone to Shanghai first: 01:00 UTC is 09:00 there, 10:00 UTC is 18:00.
    worker = Responder(duty_hours=[day.model_dump(), night.model_dump()])
    assert on_duty(worker, dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC))
    assert not on_duty(worker, dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC))
    assert on_duty(worker, dt.datetime(2026, 3, 6, 15, 0, tzinfo=dt.UTC))  # Friday 23:00 in Shanghai


async def _tree(db: Database) -> None:
    async with db.session() as s:
        await placefile.import_places(s, TREE, "csv", **WHO)


async def test_responders_for_walk_up_the_hierarchy(db: Database) -> None:
    """A household is answered by its building leader first, then its grid worker; other grids do not count."""
    await _tree(db)
    people = [
        ("楼长", "+8613800000001", "building_leader", ["B01"]),
        ("网格员", "+8613800000002", "grid_worker", ["G01"]),
        ("其他网格员", "+8613800000003", "grid_worker", ["G02"]),
        ("值班", "+8613800000004", "community_duty", ["C01"]),
    ]
    async with db.session() as s:
        for name, phone, role, codes in people:
            await responders.create_responder(
                s, ResponderData(name=name, phone=phone, role=role, places=codes), **WHO
            )
    async with db.session() as s:
        everyone = await responders.responders_for(s, "U0101")
        grid_only = await responders.responders_for(s, "U0101", role="grid_worker")
    assert [(m.responder.name, m.via.code, m.distance) for m in everyone] == [
        ("楼长", "B01", 1),
        ("网格员", "G01", 2),
        ("值班", "C01", 3),
    ]
    assert [m.responder.phone for m in grid_only] == ["+8613800000002"]


async def test_inactive_and_off_duty_responders_are_left_out(db: Database) -> None:
    """Deactivated responders never answer; off-duty ones are left out when a time is given."""
    await _tree(db)
    weekdays = [{"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "18:00"}]
    async with db.session() as s:
        a = await responders.create_responder(
            s,
            ResponderData(
                name="a", phone="+8613800000011", role="grid_worker", places=["G01"], duty_hours=weekdays
            ),
            **WHO,
        )
        b = await responders.create_responder(
            s, ResponderData(name="b", phone="+8613800000012", role="grid_worker", places=["G01"]), **WHO
        )
        await responders.update_responder(s, b.id, {"active": False}, **WHO)
    sunday_noon = dt.datetime(2026, 3, 8, 4, 0, tzinfo=dt.UTC)
    monday_noon = dt.datetime(2026, 3, 9, 4, 0, tzinfo=dt.UTC)
    async with db.session() as s:
        assert [m.responder.id for m in await responders.responders_for(s, "U0101")] == [a.id]
        assert await responders.responders_for(s, "U0101", at=sunday_noon) == []
        assert len(await responders.responders_for(s, "U0101", at=monday_noon)) == 1


async def test_duplicate_phone_and_unknown_place(db: Database) -> None:
    """A phone belongs to one responder; unknown places are named in the error."""
    await _tree(db)
    async with db.session() as s:
        await responders.create_responder(
            s, ResponderData(name="a", phone="+8613800000021", role="district"), **WHO
        )
    async with db.session() as s:
        with pytest.raises(Conflict) as dup:
            await responders.create_responder(
                s, ResponderData(name="b", phone="+86 138 0000 0021", role="district"), **WHO
            )
    async with db.session() as s:
        with pytest.raises(InvalidInput) as unknown:
            data = ResponderData(name="c", phone="+8613800000022", role="district", places=["NOPE"])
            await responders.create_responder(s, data, **WHO)
    assert dup.value.field == "phone" and unknown.value.field == "places"


async def test_responders_api(database_url: str, tmp_path: Path) -> None:
    """Create, patch and query over HTTP; bad input is 422 naming the field."""
    async with running_api(database_url, tmp_path) as api:
        h, c = api.auth(), api.client
        assert (await c.post("/api/v1/places/import", content=TREE, headers=h)).status_code == 200
        body = {
            "name": "张三",
            "phone": "+86 139 0013 9000",
            "role": "building_leader",
            "places": ["B01"],
            "language": "zh-CN",
        }
        created = await c.post("/api/v1/responders", json=body, headers=h)
        assert created.status_code == 201 and created.json()["phone"] == "+8613900139000"
        rid = created.json()["id"]
        for field, value in [
            ("phone", "139 0013 9000"),
            ("places", ["NOPE"]),
            ("role", "mayor"),
            ("language", "fr"),
        ]:
            bad = await c.post(
                "/api/v1/responders", json=body | {"phone": "+8613900139001", field: value}, headers=h
            )
            assert bad.status_code == 422 and bad.json()["field"] == field, (field, bad.json())
        bad_patch = await c.patch(f"/api/v1/responders/{rid}", json={"phone": "12"}, headers=h)
        assert bad_patch.status_code == 422 and bad_patch.json()["field"] == "phone"
        patched = await c.patch(
            f"/api/v1/responders/{rid}", json={"language": "en", "places": ["G01"]}, headers=h
        )
        assert patched.json()["language"] == "en" and patched.json()["places"] == ["G01"]
        found = await c.get("/api/v1/places/U0101/responders", params={"role": "grid_worker"}, headers=h)
        assert found.json() == []
        found = await c.get("/api/v1/places/U0101/responders", headers=h)
        assert [(m["id"], m["via"], m["distance"]) for m in found.json()] == [(rid, "G01", 2)]
        operator = api.auth(await api.key("operator"))
        assert (await c.get(f"/api/v1/responders/{rid}", headers=operator)).status_code == 200
        assert (await c.post("/api/v1/responders", json=body, headers=operator)).status_code == 403
        trail = await c.get(
            "/api/v1/audit", params={"object_type": "responder", "object_id": str(rid)}, headers=h
        )
        assert [e["action"] for e in trail.json()] == ["update", "create"]
