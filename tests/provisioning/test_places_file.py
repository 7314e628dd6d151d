"""CSV and YAML import/export of places: all or nothing, line-numbered errors, idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.db import Database
from hub.db.places import Place
from provisioning import placefile
from provisioning.placefile import PlaceFileError
from tests.provisioning.test_auth_kit import running_api

WHO = {"actor": "test", "channel": "system"}
GOOD_CSV = """code,level,name,name_en,parent,lat,lon,outline,contacts
D01-S01,street,东湖街道,Donghu Street,D01,,,,
D01,district,武昌区,,,30.55,114.31,,
D01-S01-C01,community,东湖社区,,D01-S01,,,"{""type"": ""Polygon"", ""coordinates"": [[[114.3, 30.5], [114.4, 30.5], [114.4, 30.6], [114.3, 30.5]]]}","[{""name"": ""李主任"", ""phone"": ""+8613900139000""}]"
"""


async def _count(db: Database) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(Place)) or 0)


async def test_csv_import_is_idempotent_and_round_trips(db: Database) -> None:
    """Parents may come after children; a second import changes nothing; export re-imports unchanged."""
    async with db.session() as s:
        first = await placefile.import_places(s, GOOD_CSV.encode("utf-8-sig"), "csv", **WHO)
    async with db.session() as s:
        second = await placefile.import_places(s, GOOD_CSV.encode(), "csv", **WHO)
        community = (await s.execute(select(Place).where(Place.code == "D01-S01-C01"))).scalar_one()
        street = (await s.execute(select(Place).where(Place.code == "D01-S01"))).scalar_one()
        exported = {fmt: await placefile.export_places(s, fmt) for fmt in ("csv", "yaml")}
    assert sorted(first.created) == ["D01", "D01-S01", "D01-S01-C01"]
    assert (second.created, second.updated, second.unchanged) == ([], [], 3)
    assert community.path == f"{street.path}{community.id}/"
    assert community.contacts == [{"name": "李主任", "phone": "+8613900139000"}]
    for fmt, data in exported.items():
        async with db.session() as s:
            again = await placefile.import_places(s, data, fmt, **WHO)  # type: ignore[arg-type]
        assert (again.created, again.updated, again.unchanged) == ([], [], 3), fmt
    assert "东湖社区" in exported["yaml"].decode()


async def test_changed_names_are_updated(db: Database) -> None:
    """A re-import with a new name updates that place only."""
    async with db.session() as s:
        await placefile.import_places(s, GOOD_CSV.encode(), "csv", **WHO)
    async with db.session() as s:
        report = await placefile.import_places(
            s, GOOD_CSV.replace("武昌区", "武昌区(新)").encode(), "csv", **WHO
        )
    assert report.updated == ["D01"] and report.unchanged == 2


async def test_every_bad_row_is_reported_and_nothing_applied(db: Database) -> None:
    """Bad rows are listed with their line numbers and reasons; the good rows are not imported."""
    text = (
        "code,level,name,parent,lat,lon\n"
        "D01,district,武昌区,,,\n"  # line 2: good
        "D01-S01,street,,D01,,\n"  # line 3: no name
        "D01-S02,street,二街,D09,,\n"  # line 4: unknown parent
        "D01-C01,community,社区,D01,,\n"  # line 5: wrong level under a district
        "D01-S03,street,三街,D01,91,10\n"  # line 6: latitude out of range
        "D01,district,again,,,\n"  # line 7: duplicate code
        "D01-S04,town,四街,D01,,\n"  # line 8: unknown level
    )
    async with db.session() as s:
        with pytest.raises(PlaceFileError) as info:
            await placefile.import_places(s, text.encode(), "csv", **WHO)
    lines = {e.line: e.reason for e in info.value.errors}
    assert sorted(lines) == [3, 4, 5, 6, 7, 8]
    assert "name" in lines[3] and "D09" in lines[4] and "belongs under a street" in lines[5]
    assert "lat" in lines[6] and "twice" in lines[7] and "level" in lines[8]
    assert await _count(db) == 0


async def test_hierarchy_errors_are_reported_with_lines(db: Database) -> None:
    """Once rows parse, unknown parents, wrong levels and duplicates are each reported on their line."""
    text = "code,level,name,parent\nD01,district,a,\nD01-S02,street,b,D09\nD01-C01,community,c,D01\nD01,district,d,\n"
    async with db.session() as s:
        with pytest.raises(PlaceFileError) as info:
            await placefile.import_places(s, text.encode(), "csv", **WHO)
    reasons = {e.line: e.reason for e in info.value.errors}
    assert set(reasons) == {3, 4, 5}
    assert "D09" in reasons[3] and "belongs under a street" in reasons[4] and "twice" in reasons[5]
    assert info.value.field == "file" and "line 3" in info.value.message


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("code,level,name,parent\nD01,district,武昌区,\n".encode("gbk"), "not valid utf-8"),
        ("code,level,name,parent\n".encode("utf-16"), "UTF-16"),
        (b"code,level,parent\nD01,district,\n", "missing column(s): name"),
        (b"code,level,name,parent,nmae\n", "unknown column(s): nmae"),
        (b"", "empty"),
    ],
)
async def test_unusable_files_get_a_clear_message(db: Database, raw: bytes, fragment: str) -> None:
    """Wrong encoding, UTF-16, missing or unknown columns and empty files are named as such."""
    async with db.session() as s:
        with pytest.raises(PlaceFileError) as info:
            await placefile.import_places(s, raw, "csv", **WHO)
    assert fragment in info.value.message


async def test_gb18030_files_import_when_asked(db: Database) -> None:
    """A file saved by Excel on Chinese Windows imports with encoding=gb18030."""
    raw = "code,level,name,parent\nD01,district,武昌区,\n".encode("gb18030")
    async with db.session() as s:
        report = await placefile.import_places(s, raw, "csv", encoding="gb18030", **WHO)
    assert report.created == ["D01"]


async def test_yaml_errors_carry_line_numbers(db: Database) -> None:
    """YAML rows are numbered by the line where each item starts."""
    text = "places:\n  - code: D01\n    level: district\n    name: 武昌区\n  - code: D01-S01\n    level: street\n    name: 街\n    parent: D01\n    lat: north\n"
    async with db.session() as s:
        with pytest.raises(PlaceFileError) as info:
            await placefile.import_places(s, text.encode(), "yaml", **WHO)
    assert [e.line for e in info.value.errors] == [5]
    assert "lat" in info.value.errors[0].reason


async def test_import_and_export_over_http(database_url: str, tmp_path: Path) -> None:
    """The API imports a file (dry run first), reports bad lines as 422 and exports it back."""
    async with running_api(database_url, tmp_path) as api:
        h, c = api.auth(), api.client
        dry = await c.post(
            "/api/v1/places/import", params={"dry_run": True}, content=GOOD_CSV.encode(), headers=h
        )
        assert dry.status_code == 200 and len(dry.json()["created"]) == 3
        assert (await c.get("/api/v1/places", headers=h)).json() == []
        done = await c.post("/api/v1/places/import", content=GOOD_CSV.encode(), headers=h)
        assert done.status_code == 200 and len(done.json()["created"]) == 3
        bad = await c.post(
            "/api/v1/places/import", content=b"code,level,name,parent\nX,street,x,NOPE\n", headers=h
        )
        assert bad.status_code == 422 and bad.json()["field"] == "file" and "line 2" in bad.json()["detail"]
        exported = await c.get(
            "/api/v1/places/export", params={"format": "yaml", "root": "D01-S01"}, headers=h
        )
        assert (
            exported.status_code == 200 and "D01-S01-C01" in exported.text and "武昌区" not in exported.text
        )
        again = await c.post(
            "/api/v1/places/import", params={"format": "yaml"}, content=exported.content, headers=h
        )
        assert again.json()["unchanged"] == 2
