"""Technician test mode: state, who, expiry by the injected clock, and the API's bounds."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hub.db import Database
from hub.db.devices import DeviceEvent
from hub.errors import Conflict, InvalidInput
from provisioning import devices, testmode
from provisioning.enroll import DeviceSpec, enroll_direct
from tests.provisioning.test_auth_kit import ManualClock, running_api
from tests.provisioning.test_devices_kit import TECH, make_store, make_street


async def test_test_mode_expires_by_the_clock(db: Database) -> None:
    """In test until now + N; past that the device counts as back; the sweep records the return."""
    clock = ManualClock()
    street = await make_street(db, clock())
    async with db.session() as session:
        device = (
            await enroll_direct(
                session,
                DeviceSpec(serial="SD-T", kind="smoke", household=street.h1),
                actor=TECH,
                store=make_store(db, clock),
            )
        ).device
        await devices.transition(session, device, "active", TECH, clock=clock)
        await testmode.start_test(session, device, 30, actor=TECH, clock=clock)
    assert testmode.is_in_test(device, clock()) and device.test_by == TECH.name
    clock.advance(minutes=29, seconds=59)
    assert testmode.is_in_test(device, clock()) and devices.effective_state(device, clock()) == "test"
    clock.advance(seconds=1)
    assert not testmode.is_in_test(device, clock()) and devices.effective_state(device, clock()) == "active"
    async with db.session() as session:
        swept = await testmode.expire_tests(session, clock=clock)
        assert [d.serial for d in swept] == ["SD-T"] and swept[0].state == "active"
        again = await testmode.expire_tests(session, clock=clock)
        events = (await session.scalars(select(DeviceEvent).order_by(DeviceEvent.id))).all()
    assert again == [] and [(e.from_state, e.to_state, e.actor) for e in events[-2:]] == [
        ("active", "test", TECH.name),
        ("test", "active", "system"),
    ]
    with pytest.raises(InvalidInput):
        async with db.session() as session:
            await testmode.start_test(session, device, 241, actor=TECH, clock=clock)
    async with db.session() as session:
        await devices.transition(session, device, "decommissioned", TECH, clock=clock)
    with pytest.raises(Conflict):
        async with db.session() as session:
            await testmode.start_test(session, device, 5, actor=TECH, clock=clock)


async def test_test_mode_through_the_api(database_url: str, tmp_path: Path) -> None:
    """POST /test puts it in test for N minutes remembering the technician; 0 and 241 are 422."""
    async with running_api(database_url, tmp_path) as api:
        street = await make_street(api.hub.db, api.clock())
        tech = await api.key("technician", places=[street.grid1])
        made = await api.client.post(
            "/api/v1/devices",
            json={"serial": "DR-T", "kind": "door", "household": street.h1},
            headers=api.auth(tech),
        )
        device_id = made.json()["device"]["id"]
        url = f"/api/v1/devices/{device_id}/test"
        for minutes in (0, 241):
            bad = await api.client.post(url, json={"minutes": minutes}, headers=api.auth(tech))
            assert bad.status_code == 422 and bad.json()["field"] == "minutes"
        started = await api.client.post(url, json={"minutes": 10}, headers=api.auth(tech))
        assert started.status_code == 200, started.text
        assert started.json()["in_test"] is True and started.json()["test_by"].startswith("key:")
        api.clock.advance(minutes=11)
        shown = (await api.client.get(f"/api/v1/devices/{device_id}", headers=api.auth(tech))).json()
        assert shown["in_test"] is False and shown["state"] == "claimed"
        longest = await api.client.post(url, json={"minutes": 240}, headers=api.auth(tech))
        assert longest.status_code == 200 and longest.json()["in_test"] is True
        ended = await api.client.delete(url, headers=api.auth(tech))
        assert (
            ended.status_code == 200
            and ended.json()["state"] == "claimed"
            and ended.json()["in_test"] is False
        )
        twice = await api.client.delete(url, headers=api.auth(tech))
        assert twice.status_code == 409
