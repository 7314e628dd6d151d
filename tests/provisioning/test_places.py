"""The place hierarchy through the services and the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from hub.db import Database
from hub.db.base import AuditEvent
from hub.db.people import Responder
from hub.db.places import Place
from hub.errors import Conflict, InvalidInput, NotFound
from provisioning import places
from provisioning.places import PlaceData
from tests.provisioning.test_auth_kit import ManualClock, running_api

WHO = {"actor": "test", "channel": "system"}
CHAIN = [
    ("D01", "district", None, "东湖街道辖区"),
    ("D01-S01", "street", "D01", "东湖街道"),
    ("D01-S01-C01", "community", "D01-S01", "东湖社区"),
    ("D01-S01-C01-G001", "grid", "D01-S01-C01", "第一网格"),
    ("D01-S01-C01-G001-B01", "building", "D01-S01-C01-G001", "1号楼"),
    ("D01-S01-C01-G001-B01-U0101", "household", "D01-S01-C01-G001-B01", "101室"),
]


async def _build(db: Database, clock: ManualClock | None = None) -> dict[str, Place]:
    made = {}
    async with db.session() as s:
        for code, level, parent, name in CHAIN:
            data = PlaceData(code=code, level=level, parent=parent, name=name)
            made[code] = await places.create_place(s, data, **WHO, clock=clock or ManualClock())
    return made


async def test_paths_follow_the_hierarchy(db: Database) -> None:
    """Each path is the parent's plus its own id; the subtree is one range query."""
    made = await _build(db)
    household = made["D01-S01-C01-G001-B01-U0101"]
    assert household.path == "/" + "/".join(str(made[c].id) for c, *_ in CHAIN) + "/"
    async with db.session() as s:
        grid = await places.get_place(s, "D01-S01-C01-G001")
        codes = [p.code for p in await places.subtree(s, grid)]
        households = await places.subtree(s, grid, level="household")
    assert codes == [c for c, *_ in CHAIN[3:]]
    assert [p.code for p in households] == [CHAIN[-1][0]]


@pytest.mark.parametrize(
    ("code", "level", "parent", "field"),
    [
        ("X1", "street", None, "parent"),
        ("X2", "district", "D01", "parent"),
        ("X3", "community", "D01", "parent"),
        ("X4", "street", "NOPE", "parent"),
    ],
)
async def test_level_rules_and_unknown_parent(
    db: Database, code: str, level: str, parent: str | None, field: str
) -> None:
    """A child sits exactly one level below its parent; districts have none; parents must exist."""
    await _build(db)
    async with db.session() as s:
        with pytest.raises(InvalidInput) as info:
            await places.create_place(s, PlaceData(code=code, level=level, parent=parent, name="x"), **WHO)
    assert info.value.field == field


async def test_duplicate_code_is_a_conflict(db: Database) -> None:
    """Codes are unique."""
    await _build(db)
    async with db.session() as s:
        with pytest.raises(Conflict):
            await places.create_place(s, PlaceData(code="D01", level="district", name="again"), **WHO)


async def test_move_rewrites_the_subtree_and_keeps_references(db: Database) -> None:
    """Moving a building to another grid rewrites every path under it; a responder stays assigned."""
    made = await _build(db)
    async with db.session() as s:
        other = await places.create_place(
            s, PlaceData(code="D01-S01-C01-G002", level="grid", parent="D01-S01-C01", name="第二网格"), **WHO
        )
        moved = await places.move_place(s, "D01-S01-C01-G001-B01", "D01-S01-C01-G002", **WHO)
    household = made["D01-S01-C01-G001-B01-U0101"]
    async with db.session() as s:
        fresh = await places.get_place(s, household.code)
        old_grid = await places.get_place(s, "D01-S01-C01-G001")
        old_subtree = [p.code for p in await places.subtree(s, old_grid)]
        events = (await s.execute(select(AuditEvent).where(AuditEvent.action == "move"))).scalars().all()
    assert moved.path == f"{other.path}{moved.id}/"
    assert fresh.id == household.id and fresh.path == f"{other.path}{moved.id}/{household.id}/"
    assert old_subtree == ["D01-S01-C01-G001"]
    assert events[0].detail == {"from": "D01-S01-C01-G001", "to": "D01-S01-C01-G002", "places_moved": 2}


async def test_move_under_a_wrong_level_is_refused(db: Database) -> None:
    """A building cannot move under a community (or under itself)."""
    await _build(db)
    async with db.session() as s:
        with pytest.raises(InvalidInput):
            await places.move_place(s, "D01-S01-C01-G001-B01", "D01-S01-C01", **WHO)
        with pytest.raises(InvalidInput):
            await places.move_place(s, "D01-S01-C01-G001-B01", "D01-S01-C01-G001-B01", **WHO)


async def test_delete_with_children_or_references_is_409(db: Database) -> None:
    """Parents and places that something refers to cannot be deleted; a free leaf can."""
    made = await _build(db)
    leaf = made["D01-S01-C01-G001-B01-U0101"]
    async with db.session() as s:
        with pytest.raises(Conflict, match="child"):
            await places.delete_place(s, "D01-S01-C01-G001-B01", **WHO)
        r = Responder(
            name="王",
            phone="+8613800138000",
            role="building_leader",
            created_at=leaf.created_at,
            updated_at=leaf.created_at,
        )
        s.add(r)
        await s.flush()
        await s.execute(
            text("INSERT INTO responder_places (responder_id, place_id) VALUES (:r, :p)"),
            {"r": r.id, "p": leaf.id},
        )
    async with db.session() as s:
        with pytest.raises(Conflict, match="responder_places"):
            await places.delete_place(s, leaf.code, **WHO)
    async with db.session() as s:
        await s.execute(text("DELETE FROM responder_places"))
        await places.delete_place(s, leaf.code, **WHO)
    async with db.session() as s:
        with pytest.raises(NotFound):
            await places.get_place(s, leaf.code)


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite compares bytes already
async def test_postgres_path_column_sorts_bytewise(db: Database) -> None:
    """On PostgreSQL the path column uses the C collation, so range scans are right under any locale."""
    async with db.session() as s:
        collation = await s.scalar(
            text(
                "SELECT collation_name FROM information_schema.columns WHERE table_name='places' AND column_name='path'"
            )
        )
    assert collation == "C"


async def test_places_api_crud_and_move(database_url: str, tmp_path: Path) -> None:
    """Create, read, update, move and delete over HTTP, with the problem statuses."""
    async with running_api(database_url, tmp_path) as api:
        h, c = api.auth(), api.client
        for code, level, parent, name in CHAIN[:5]:
            body = {"code": code, "level": level, "parent": parent, "name": name}
            assert (await c.post("/api/v1/places", json=body, headers=h)).status_code == 201
        bad = await c.post(
            "/api/v1/places", json={"code": "Z", "level": "grid", "parent": "D01", "name": "z"}, headers=h
        )
        assert bad.status_code == 422 and bad.json()["field"] == "parent"
        dup = await c.post(
            "/api/v1/places", json={"code": "D01", "level": "district", "name": "z"}, headers=h
        )
        assert dup.status_code == 409
        patched = await c.patch(
            "/api/v1/places/D01", json={"name_en": "Donghu", "lat": 30.5, "lon": 114.3}, headers=h
        )
        assert patched.status_code == 200
        assert (patched.json()["name_en"], patched.json()["lat"], patched.json()["lon"]) == (
            "Donghu",
            30.5,
            114.3,
        )
        locked = await c.patch("/api/v1/places/D01", json={"level": "street"}, headers=h)
        assert locked.status_code == 422 and locked.json()["field"] == "level"
        g2 = await c.post(
            "/api/v1/places",
            json={"code": "G2", "level": "grid", "parent": "D01-S01-C01", "name": "g2"},
            headers=h,
        )
        assert g2.status_code == 201, g2.text
        moved = await c.post("/api/v1/places/D01-S01-C01-G001-B01/move", json={"parent": "G2"}, headers=h)
        assert moved.status_code == 200 and moved.json()["parent"] == "G2"
        sub = await c.get("/api/v1/places/G2/subtree", headers=h)
        assert [p["code"] for p in sub.json()] == ["G2", "D01-S01-C01-G001-B01"]
        assert (await c.delete("/api/v1/places/G2", headers=h)).status_code == 409
        assert (await c.delete("/api/v1/places/D01-S01-C01-G001", headers=h)).status_code == 204
        assert (await c.get("/api/v1/places/D01-S01-C01-G001", headers=h)).status_code == 404
        listed = await c.get("/api/v1/places", params={"level": "grid"}, headers=h)
        assert [p["code"] for p in listed.json()] == ["G2"]


async def test_technician_sees_only_their_subtree(database_url: str, tmp_path: Path) -> None:
    """A key limited to a grid lists and reads only that grid's subtree and may not write."""
    async with running_api(database_url, tmp_path) as api:
        h, c = api.auth(), api.client
        for code, level, parent, name in CHAIN:
            await c.post(
                "/api/v1/places",
                json={"code": code, "level": level, "parent": parent, "name": name},
                headers=h,
            )
        tech = api.auth(await api.key("technician", places=["D01-S01-C01-G001"]))
        listed = await c.get("/api/v1/places", headers=tech)
        assert [p["code"] for p in listed.json()] == [code for code, *_ in CHAIN[3:]]
        assert (await c.get("/api/v1/places/D01-S01-C01-G001-B01-U0101", headers=tech)).status_code == 200
        assert (await c.get("/api/v1/places/D01-S01", headers=tech)).status_code == 403
        body = {"code": "B9", "level": "building", "parent": "D01-S01-C01-G001", "name": "b9"}
        assert (await c.post("/api/v1/places", json=body, headers=tech)).status_code == 403
