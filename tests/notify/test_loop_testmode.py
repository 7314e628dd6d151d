"""Technician test mode through the whole hub: an alarm of a device in test reaches the technician only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.db.base import AuditEvent
from hub.db.cases import Case
from hub.db.devices import DeviceEvent
from provisioning.apikeys import create_key
from provisioning.responders import ResponderData, create_responder
from tests.notify.test_loop import WHO, Loop, loop_rig
from tests.servers.prism import PrismServer

TECH_PHONE = "+8613800009999"


@pytest.fixture
async def loop(database_url: str, tmp_path: Path, prism: PrismServer) -> AsyncIterator[Loop]:
    """The running loop rig, with test alarms announced on the live event stream."""
    async for rig in loop_rig(database_url, tmp_path, prism):
        # What hub/app.py should wire (see the report): the case pipeline announces on the ingest bus.
        rig.hub.cases.pipeline.events = rig.hub.ingest.bus.publish
        yield rig


async def _keys(loop: Loop) -> dict[str, dict[str, str]]:
    """Technician keys for the building: one linked to a responder with a phone, one not."""
    building = loop.town.street.building
    async with loop.hub.db.session() as session:
        data = ResponderData(name="李师傅", phone=TECH_PHONE, role="grid_worker", places=[building])
        tech = await create_responder(session, data, **WHO)
        _, linked = await create_key(
            session, name="li", role="technician", places=[building], responder_id=tech.id, **WHO
        )
        _, bare = await create_key(session, name="wu", role="technician", places=[building], **WHO)
    return {"linked": {"X-API-Key": linked}, "bare": {"X-API-Key": bare}}


async def _start_test(loop: Loop, serial: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    device = loop.hub.ingest.directory.get(serial)
    assert device is not None
    answer = await loop.http.post(
        f"/api/v1/devices/{device.id}/test", json={"minutes": 30, **body}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    shown: dict[str, Any] = answer.json()
    # The ingest side learns the new state the way the API's other changes reach it.
    await loop.hub.ingest.directory.refresh(device.id)
    return shown


async def test_alarms_in_test_confirm_to_the_technician_and_open_no_case(loop: Loop) -> None:
    keys = await _keys(loop)
    await loop.device("SMK-T1", "smoke", "U1")
    await loop.device("SMK-T2", "smoke", "U2")
    await loop.device("SMK-T3", "smoke", "U2")
    shown = await _start_test(loop, "SMK-T1", keys["linked"])
    assert shown["in_test"] is True and shown["test_by"].startswith("key:")
    bad = await loop.http.post(
        f"/api/v1/devices/{shown['id']}/test",
        json={"minutes": 5, "notify_phone": "12345"},
        headers=keys["bare"],
    )
    assert bad.status_code == 422 and "notify_phone" in bad.text
    await _start_test(loop, "SMK-T2", keys["bare"], notify_phone="+44 7700 900777")
    await _start_test(loop, "SMK-T3", keys["bare"])

    async with loop.hub.ingest.bus.subscribe() as live:
        for serial in ("SMK-T1", "SMK-T2", "SMK-T3"):
            await loop.press(serial, "alarm")
        zh = await loop.sent(
            lambda r: r.kind == "test_confirmation" and r.phone == TECH_PHONE, "zh confirmation"
        )
        en = await loop.sent(lambda r: r.kind == "test_confirmation" and r.phone == "+447700900777", "en one")
        events = [await asyncio.wait_for(_next_test_alarm(live), 10) for _ in range(3)]
    assert "【测试】" in (zh.body or "") and "SMK-T1" in (zh.body or "") and "火警" in (zh.body or "")
    assert (en.body or "").startswith("[TEST] Fire alarm test alarm received from SMK-T2")
    assert {(e["serial"], e["notified"]) for e in events} == {
        ("SMK-T1", True),
        ("SMK-T2", True),
        ("SMK-T3", False),
    }
    # No case, and no responder was told: only the two confirmations left for Twilio.
    async with loop.hub.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == 0
        alarms = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "test_alarm"))).all()
        notes = (
            await session.scalars(select(DeviceEvent.note).where(DeviceEvent.note.like("test alarm%")))
        ).all()
    assert sorted(str(a.detail["phone"]) for a in alarms) == ["+447700900777", "+8613800009999", "None"]
    assert len(notes) == 3 and sum("no phone to confirm to" in n for n in notes) == 1
    assert [r.kind for r in await loop.rows()] == ["test_confirmation"] * 2

    # The test period ends by itself: the next alarm of that device is a real one.
    loop.clock.advance(minutes=31)
    await loop.press("SMK-T1", "alarm_cleared", seq=2)  # the event rule holds until its clearing event
    await loop.press("SMK-T1", "alarm", seq=3)
    case = await loop.case(category="fire")
    leader = await loop.sent(lambda r: r.case_id == case.id, "the real alarm's SMS")
    assert leader.phone == loop.town.phones["building_leader"] and leader.kind == "case_alert"


async def _next_test_alarm(queue: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    while True:
        event = await queue.get()
        if event.get("type") == "test_alarm":
            return event
