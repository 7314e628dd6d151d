"""Devices: lifecycle rules, events and audit, direct enrollment through the API and its bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hub.db import Database
from hub.db.base import AuditEvent
from hub.db.devices import DeviceEvent
from hub.errors import AuthError, Conflict, InvalidInput
from provisioning import devices
from provisioning.enroll import DeviceSpec, enroll_direct
from tests.provisioning.test_auth_kit import ManualClock, running_api
from tests.provisioning.test_devices_kit import TECH, make_store, make_street


async def test_lifecycle_transitions_are_checked_and_recorded(db: Database) -> None:
    """Allowed moves are evented and audited with from/to/note; forbidden ones are 409."""
    clock = ManualClock()
    street = await make_street(db, clock())
    store = make_store(db, clock)
    async with db.session() as session:
        device = (
            await enroll_direct(
                session,
                DeviceSpec(serial="S-1", kind="smoke", household=street.h1),
                actor=TECH,
                store=store,
                clock=clock,
            )
        ).device
    for to in ("active", "maintenance", "active", "decommissioned"):
        clock.advance(minutes=1)
        async with db.session() as session:
            await devices.transition(session, device, to, TECH, note=f"to {to}", clock=clock)
    with pytest.raises(Conflict, match="decommissioned"):
        async with db.session() as session:
            await devices.transition(session, device, "active", TECH, clock=clock)
    with pytest.raises(InvalidInput):
        async with db.session() as session:
            await devices.transition(session, device, "exploded", TECH, clock=clock)
    async with db.session() as session:
        events = (await session.scalars(select(DeviceEvent).order_by(DeviceEvent.id))).all()
        audits = (await session.scalars(select(AuditEvent).where(AuditEvent.action == "device.state"))).all()
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, "claimed"),
        ("claimed", "active"),
        ("active", "maintenance"),
        ("maintenance", "active"),
        ("active", "decommissioned"),
    ]
    assert events[1].actor == TECH.name and events[1].note == "to active" and events[1].at > events[0].at
    assert len(audits) == 5 and audits[-1].detail["to"] == "decommissioned"


def test_transition_table_has_no_way_back_from_decommissioned() -> None:
    """Every target is a known state and decommissioned is final."""
    assert devices.TRANSITIONS["decommissioned"] == frozenset()
    assert all(targets <= set(devices.STATES) for targets in devices.TRANSITIONS.values())


async def test_enroll_through_the_api_and_its_bad_inputs(database_url: str, tmp_path: Path) -> None:
    """201 with secrets; 409 naming the device; 422 naming household; 403 outside the technician's grid."""
    async with running_api(database_url, tmp_path) as api:
        street = await make_street(api.hub.db, api.clock())
        tech = await api.key("technician", places=[street.grid1])
        body = {"serial": "SD-100", "kind": "smoke", "household": street.h1, "position": "kitchen ceiling"}
        created = await api.client.post("/api/v1/devices", json=body, headers=api.auth(tech))
        assert created.status_code == 201, created.text
        device = created.json()["device"]
        assert device["state"] == "claimed" and device["household"] == street.h1
        assert len(created.json()["secrets"]["mqtt_password"]) >= 20

        again = await api.client.post("/api/v1/devices", json=body, headers=api.auth(tech))
        assert again.status_code == 409 and f"device {device['id']}" in again.json()["detail"]
        unknown = await api.client.post(
            "/api/v1/devices", json=body | {"serial": "SD-101", "household": "H-NOPE"}, headers=api.auth(tech)
        )
        assert unknown.status_code == 422 and unknown.json()["field"] == "household"
        bad_kind = await api.client.post(
            "/api/v1/devices", json=body | {"serial": "SD-102", "kind": "toaster"}, headers=api.auth(tech)
        )
        assert bad_kind.status_code == 422 and bad_kind.json()["field"] == "kind"
        outside = await api.client.post(
            "/api/v1/devices",
            json=body | {"serial": "SD-103", "household": street.h3},
            headers=api.auth(tech),
        )
        assert outside.status_code == 403
        cam = await api.client.post(
            "/api/v1/devices",
            json={"serial": "CAM-1", "kind": "bodycam", "responder_id": street.wearer_id},
            headers=api.auth(),
        )
        assert cam.status_code == 201 and cam.json()["device"]["responder_id"] == street.wearer_id

        listed = await api.client.get("/api/v1/devices", headers=api.auth(tech))
        assert [d["serial"] for d in listed.json()] == ["SD-100"]
        everything = await api.client.get("/api/v1/devices", headers=api.auth())
        assert {d["serial"] for d in everything.json()} == {"SD-100", "CAM-1"}
        shown = await api.client.get(f"/api/v1/devices/{device['id']}", headers=api.auth(tech))
        assert shown.json()["events"][0]["to"] == "claimed"
        cam_id = cam.json()["device"]["id"]
        assert (await api.client.get(f"/api/v1/devices/{cam_id}", headers=api.auth(tech))).status_code == 403
        moved = await api.client.post(
            f"/api/v1/devices/{device['id']}/state", json={"state": "registered"}, headers=api.auth(tech)
        )
        assert moved.status_code == 409


async def test_rotate_and_revoke_through_the_api(database_url: str, tmp_path: Path) -> None:
    """Rotate returns new secrets and notifies; revoke makes the device's next login fail."""
    async with running_api(database_url, tmp_path) as api:
        street = await make_street(api.hub.db, api.clock())
        from hub.api.devices import credential_events, credential_store

        heard: list[tuple[int, str]] = []
        credential_events(api.hub).subscribe(lambda d, w: heard.append((d, w)))
        made = await api.client.post(
            "/api/v1/devices",
            json={"serial": "PB-1", "kind": "panic_button", "household": street.h2},
            headers=api.auth(),
        )
        device_id, first = made.json()["device"]["id"], made.json()["secrets"]["mqtt_password"]
        rotated = await api.client.post(f"/api/v1/devices/{device_id}/rotate", headers=api.auth())
        second = rotated.json()["secrets"]["mqtt_password"]
        store = credential_store(api.hub, api.clock)
        assert second != first and await store.verify_mqtt_password("PB-1", second) == device_id
        revoked = await api.client.post(
            f"/api/v1/devices/{device_id}/revoke", json={"note": "stolen"}, headers=api.auth()
        )
        assert revoked.status_code == 200
        with pytest.raises(AuthError, match="refused"):
            await store.verify_mqtt_password("PB-1", second)
        assert heard == [(device_id, "enrolled"), (device_id, "rotated"), (device_id, "revoked")]
