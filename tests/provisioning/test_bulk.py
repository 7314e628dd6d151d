"""CSV bulk import: whole-file validation, line-numbered errors, all-or-nothing, idempotence, encodings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.db import Database
from hub.db.base import AuditEvent
from hub.db.devices import Device, DeviceEvent
from hub.errors import InvalidInput
from provisioning.bulk import import_devices
from tests.provisioning.test_auth_kit import ManualClock, running_api
from tests.provisioning.test_devices_kit import TECH, make_street

GOOD = (
    "serial,kind,household,position,transport\n"
    "SD-1,smoke,H1-101,kitchen,mqtt\n"
    "DR-1,door,H1-101,front door,\n"
    "PB-1,panic_button,H2-201,bedside,coap\n"
)


async def _count(db: Database, table: type) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def test_good_file_imports_once_and_rerun_changes_nothing(db: Database) -> None:
    """Three rows → three devices with events and audit rows; the same file again creates none."""
    clock = ManualClock()
    await make_street(db, clock())
    seen: list[int] = []
    async with db.session() as session:
        report = await import_devices(session, GOOD.encode(), actor=TECH, progress=seen.append, clock=clock)
    assert report.applied and report.created == 3 and report.errors == [] and sum(seen) == 3
    async with db.session() as session:
        again = await import_devices(session, GOOD.encode(), actor=TECH, clock=clock)
        pb = (await session.scalars(select(Device).where(Device.serial == "PB-1"))).one()
    assert again.applied and again.created == 0 and again.unchanged == 3
    assert pb.transport == "coap" and pb.state == "claimed" and pb.position == "bedside"
    assert await _count(db, Device) == 3 and await _count(db, DeviceEvent) == 3
    async with db.session() as session:
        imported = await session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "device.imported")
        )
    assert imported == 3


async def test_bad_rows_are_all_reported_and_nothing_is_written(db: Database) -> None:
    """Every bad row comes back with its line and reason; without skip_invalid nothing is applied."""
    clock = ManualClock()
    await make_street(db, clock())
    async with db.session() as session:
        await import_devices(session, b"serial,kind,household\nOLD-1,smoke,H1-101\n", actor=TECH, clock=clock)
    text = (
        "serial,kind,household\n"
        "OK-1,smoke,H1-101\n"  # line 2
        "OK-2,toaster,H1-101\n"  # line 3: kind
        "OK-1,door,H1-102\n"  # line 4: duplicate in file
        "OK-3,door,NOWHERE\n"  # line 5: household
        ",smoke,H1-101\n"  # line 6: serial
        "OLD-1,smoke,H2-201\n"  # line 7: registry, other household
        "OK-4,door,B1\n"  # line 8: not a household
        "OK-5,smoke,H1-102\n"  # line 9: good
    )
    async with db.session() as session:
        report = await import_devices(session, text.encode(), actor=TECH, clock=clock)
    assert not report.applied and report.created == 0
    reasons = {e.line: e.reason for e in report.errors}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "toaster" in reasons[3] and "first on line 2" in reasons[4] and "NOWHERE" in reasons[5]
    assert "empty" in reasons[6] and "already enrolled as device" in reasons[7] and "building" in reasons[8]
    assert await _count(db, Device) == 1

    async with db.session() as session:
        skipped = await import_devices(session, text.encode(), actor=TECH, skip_invalid=True, clock=clock)
    assert skipped.applied and skipped.created == 2 and len(skipped.errors) == 6
    assert await _count(db, Device) == 3


async def test_encodings_and_headers(db: Database) -> None:
    """A UTF-8 BOM is accepted and noted; GBK bytes and a bad header are refused with nothing written."""
    clock = ManualClock()
    await make_street(db, clock())
    chinese = "serial,kind,household,position\nSD-9,smoke,H1-101,厨房天花板\n"
    async with db.session() as session:
        with pytest.raises(InvalidInput, match="GBK") as gbk:
            await import_devices(session, chinese.encode("gbk"), actor=TECH, clock=clock)
        assert "line 2" in gbk.value.message
        with pytest.raises(InvalidInput, match="missing column\\(s\\): household") as header:
            await import_devices(session, b"serial,kind\nX,smoke\n", actor=TECH, clock=clock)
        assert header.value.field == "header"
        with pytest.raises(InvalidInput, match="unknown column\\(s\\): houshold"):
            await import_devices(session, b"serial,kind,household,houshold\n", actor=TECH, clock=clock)
    assert await _count(db, Device) == 0
    async with db.session() as session:
        report = await import_devices(session, b"\xef\xbb\xbf" + chinese.encode(), actor=TECH, clock=clock)
        position = await session.scalar(select(Device.position).where(Device.serial == "SD-9"))
    assert report.applied and report.created == 1 and "BOM" in report.notes[0]
    assert position == "厨房天花板"


async def test_import_through_the_api_respects_the_technicians_places(
    database_url: str, tmp_path: Path
) -> None:
    """A technician of grid G1 cannot import into G2 (row error, 422); inside G1 it applies."""
    async with running_api(database_url, tmp_path) as api:
        street = await make_street(api.hub.db, api.clock())
        tech = await api.key("technician", places=[street.grid1])
        headers = api.auth(tech) | {"content-type": "text/csv"}
        refused = await api.client.post("/api/v1/devices/import", content=GOOD.encode(), headers=headers)
        assert refused.status_code == 422
        assert [(e["line"], "not allowed" in e["reason"]) for e in refused.json()["errors"]] == [(4, True)]
        inside = "\n".join(GOOD.splitlines()[:3]) + "\n"
        ok = await api.client.post("/api/v1/devices/import", content=inside.encode(), headers=headers)
        assert ok.status_code == 200 and ok.json()["created"] == 2
