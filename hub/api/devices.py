"""Devices: list, show, lifecycle changes, technician test mode, credential rotation and revocation."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.auth import ClockDep, Principal, require_roles
from hub.api.deps import HubDep, Id
from hub.api.scope import Scope
from hub.db.devices import Device, DeviceEvent
from hub.db.places import Place
from provisioning import devices, testmode
from provisioning.audit import Clock
from provisioning.credentials import CredentialEvents, CredentialStore, SecretBox
from provisioning.responders import normalise_phone

if TYPE_CHECKING:
    from hub.app import Hub

__all__ = ["credential_events", "credential_store", "device_out", "router"]

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])
Reader = Annotated[Principal, Depends(require_roles("technician", "operator"))]
Technician = Annotated[Principal, Depends(require_roles("technician"))]


def credential_events(hub: Hub) -> CredentialEvents:
    """The hub's credential notifier (attached on first use until Hub declares the field)."""
    events: CredentialEvents | None = getattr(hub, "credential_events", None)
    if events is None:
        events = CredentialEvents()
        hub.credential_events = events  # type: ignore[attr-defined]
    return events


def credential_store(hub: Hub, clock: Clock) -> CredentialStore:
    """A credential store over the hub's database, sealing with a key derived from HUB_SECRET_KEY."""
    box = SecretBox(hub.settings.secret_key.get_secret_value())
    return CredentialStore(hub.db, box, credential_events(hub), clock)


def device_out(device: Device, now: dt.datetime, place_code: str | None = None) -> dict[str, Any]:
    """The JSON view of a device, with its state as of ``now``."""
    return {
        "id": device.id,
        "serial": device.serial,
        "imei": device.imei,
        "kind": device.kind,
        "model": device.model,
        "firmware": device.firmware,
        "transport": device.transport,
        "place_id": device.place_id,
        "household": place_code,
        "responder_id": device.responder_id,
        "position": device.position,
        "state": devices.effective_state(device, now),
        "in_test": testmode.is_in_test(device, now),
        "test_until": device.test_until.isoformat()
        if testmode.is_in_test(device, now) and device.test_until
        else None,
        "test_by": device.test_by if testmode.is_in_test(device, now) else None,
        "created_at": device.created_at.isoformat(),
    }


async def allowed_device(
    session: AsyncSession, device_id: int, principal: Principal
) -> tuple[Device, str | None]:
    """The device, if the principal may act on it (403 outside its places); with its household code."""
    device = await devices.get_device(session, device_id)
    place = None if device.place_id is None else await session.get(Place, device.place_id)
    scope = Scope.of(principal)
    if not scope.inside(None if place is None else place.path):
        # Named as the caller named it: the household it lies in is none of this key's business.
        raise await scope.refuse(session, f"device {device_id}")
    return device, None if place is None else place.code


def _actor(principal: Principal) -> devices.Actor:
    return devices.Actor(principal.actor, "api")


class StateChange(BaseModel):
    """A lifecycle change asked for by a technician."""

    model_config = {"extra": "forbid"}
    state: str
    note: str = Field(default="", max_length=500)


class TestRequest(BaseModel):
    """How long to keep the device in test."""

    model_config = {"extra": "forbid"}
    minutes: int = Field(ge=testmode.MIN_MINUTES, le=testmode.MAX_MINUTES)
    # Where the "test alarm received" SMS goes when the caller's key is linked to no responder's phone.
    notify_phone: str | None = None

    @field_validator("notify_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else normalise_phone(value)


class Note(BaseModel):
    """A free-text reason."""

    model_config = {"extra": "forbid"}
    note: str = Field(default="", max_length=500)


@router.get("")
async def list_devices(
    hub: HubDep,
    principal: Reader,
    clock: ClockDep,
    kind: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_id: Id | None = None,
) -> list[dict[str, Any]]:
    """Devices in the caller's places, by id; page with ``after_id``."""
    async with hub.db.session() as session:
        found = await devices.list_devices(
            session, principal=principal, kind=kind, state=state, limit=limit, after_id=after_id
        )
        ids = {d.place_id for d in found if d.place_id is not None}
        query = select(Place.id, Place.code).where(Place.id.in_(ids))
        codes = {row[0]: row[1] for row in await session.execute(query)}
    now = clock()
    return [device_out(d, now, codes.get(d.place_id) if d.place_id else None) for d in found]


@router.get("/{device_id}")
async def show_device(device_id: Id, hub: HubDep, principal: Reader, clock: ClockDep) -> dict[str, Any]:
    """One device with its lifecycle history."""
    async with hub.db.session() as session:
        device, code = await allowed_device(session, device_id, principal)
        history = (
            await session.scalars(
                select(DeviceEvent).where(DeviceEvent.device_id == device.id).order_by(DeviceEvent.id)
            )
        ).all()
    events = [
        {
            "at": e.at.isoformat(),
            "actor": e.actor,
            "channel": e.channel,
            "from": e.from_state,
            "to": e.to_state,
        }
        | {"note": e.note}
        for e in history
    ]
    return device_out(device, clock(), code) | {"events": events}


@router.post("/{device_id}/state")
async def change_state(
    device_id: Id, body: StateChange, hub: HubDep, principal: Technician, clock: ClockDep
) -> dict[str, Any]:
    """Move the device along its lifecycle (409 when the move is not allowed)."""
    async with hub.db.session() as session:
        device, code = await allowed_device(session, device_id, principal)
        await devices.transition(session, device, body.state, _actor(principal), note=body.note, clock=clock)
    if body.state == "decommissioned":
        credential_events(hub).publish(device.id, "decommissioned")
    return device_out(device, clock(), code)


@router.post("/{device_id}/test")
async def start_test(
    device_id: Id, body: TestRequest, hub: HubDep, principal: Technician, clock: ClockDep
) -> dict[str, Any]:
    """Put the device in test for ``minutes`` (1-240); it leaves test by itself; alarms confirm to the caller."""
    async with hub.db.session() as session:
        device, code = await allowed_device(session, device_id, principal)
        await testmode.start_test(
            session,
            device,
            body.minutes,
            actor=_actor(principal),
            clock=clock,
            notify_phone=body.notify_phone,
        )
    return device_out(device, clock(), code)


@router.delete("/{device_id}/test")
async def stop_test(device_id: Id, hub: HubDep, principal: Technician, clock: ClockDep) -> dict[str, Any]:
    """End test mode now."""
    async with hub.db.session() as session:
        device, code = await allowed_device(session, device_id, principal)
        await testmode.end_test(session, device, actor=_actor(principal), clock=clock)
    return device_out(device, clock(), code)


@router.post("/{device_id}/rotate")
async def rotate(device_id: Id, hub: HubDep, principal: Technician, clock: ClockDep) -> dict[str, Any]:
    """Issue new secrets (shown once); the old ones stop working and live sessions are dropped."""
    store = credential_store(hub, clock)
    async with hub.db.session() as session:
        device, _ = await allowed_device(session, device_id, principal)
        issued = await store.issue(session, device, principal.actor, "api")
    store.announce(device.id, "rotated")
    return {"device_id": device.id, "serial": device.serial, "secrets": issued.public()}


@router.post("/{device_id}/revoke")
async def revoke(
    device_id: Id, body: Note, hub: HubDep, principal: Technician, clock: ClockDep
) -> dict[str, Any]:
    """Revoke the device's secrets: its next connect is refused and live sessions are dropped."""
    store = credential_store(hub, clock)
    async with hub.db.session() as session:
        device, _ = await allowed_device(session, device_id, principal)
        await store.revoke(session, device, principal.actor, "api", body.note)
    store.announce(device.id, "revoked")
    return {"device_id": device.id, "serial": device.serial, "revoked": True}
