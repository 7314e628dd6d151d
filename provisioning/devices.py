"""The device registry: kinds, lifecycle states and allowed transitions, each change evented and audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.devices import Device, DeviceEvent
from hub.db.people import Responder
from hub.db.places import Place
from hub.errors import Conflict, InvalidInput, NotFound
from provisioning.apikeys import Principal, scope_clause
from provisioning.audit import Clock, record, utcnow

__all__ = [
    "KINDS",
    "STATES",
    "TRANSITIONS",
    "TRANSPORTS",
    "Actor",
    "add_event",
    "effective_state",
    "get_device",
    "get_device_by_serial",
    "list_devices",
    "resolve_household",
    "resolve_wearer",
    "transition",
    "validate_kind",
    "validate_transport",
]

# The drivers in drivers/ decode these kinds; a plain set keeps the registry free of driver imports.
KINDS = ("smoke", "door", "bodycam", "panic_button")
TRANSPORTS = ("mqtt", "coap")
STATES = ("registered", "claimed", "active", "test", "maintenance", "decommissioned")
TRANSITIONS: dict[str, frozenset[str]] = {
    "registered": frozenset({"claimed", "decommissioned"}),
    "claimed": frozenset({"active", "test", "maintenance", "decommissioned"}),
    "active": frozenset({"test", "maintenance", "decommissioned"}),
    "test": frozenset({"claimed", "active", "maintenance", "decommissioned"}),
    "maintenance": frozenset({"active", "test", "decommissioned"}),
    "decommissioned": frozenset(),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, through which channel (the audit log's two columns)."""

    name: str
    channel: str = "api"


def validate_kind(kind: str, field: str = "kind") -> str:
    """Return ``kind`` if the hub knows it."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown device kind {kind!r}; one of {', '.join(KINDS)}", field=field)
    return kind


def validate_transport(transport: str, field: str = "transport") -> str:
    """Return ``transport`` if it is mqtt or coap."""
    if transport not in TRANSPORTS:
        raise InvalidInput(f"unknown transport {transport!r}; one of {', '.join(TRANSPORTS)}", field=field)
    return transport


def effective_state(device: Device, now: dt.datetime) -> str:
    """The state as of ``now``: an expired test period counts as over even before it is swept."""
    if device.state == "test" and device.test_until is not None and device.test_until <= now:
        return device.test_from or "active"
    return device.state


async def get_device(session: AsyncSession, device_id: int) -> Device:
    """The device with this id, or NotFound."""
    device = await session.get(Device, device_id)
    if device is None:
        raise NotFound(f"device {device_id} not found")
    return device


async def get_device_by_serial(session: AsyncSession, serial: str) -> Device | None:
    """The device with this serial, if any."""
    result = await session.scalars(select(Device).where(Device.serial == serial))
    return result.first()


async def resolve_household(session: AsyncSession, ref: int | str, field: str = "household") -> Place:
    """A household place by id or code; InvalidInput naming ``field`` otherwise."""
    query = (
        select(Place).where(Place.id == ref)
        if isinstance(ref, int)
        else select(Place).where(Place.code == ref)
    )
    place = (await session.scalars(query)).first()
    if place is None:
        raise InvalidInput(f"unknown household {ref!r}", field=field)
    if place.level != "household":
        raise InvalidInput(f"place {place.code!r} is a {place.level}, not a household", field=field)
    return place


async def resolve_wearer(session: AsyncSession, responder_id: int, field: str = "responder_id") -> Responder:
    """The grid worker who wears a body-cam; InvalidInput naming ``field`` otherwise."""
    responder = await session.get(Responder, responder_id)
    if responder is None:
        raise InvalidInput(f"unknown responder {responder_id}", field=field)
    return responder


async def list_devices(
    session: AsyncSession,
    *,
    principal: Principal | None = None,
    kind: str | None = None,
    state: str | None = None,
    limit: int = 100,
    after_id: int | None = None,
) -> Sequence[Device]:
    """Devices by id, kept to the principal's places when it is limited to some."""
    query = select(Device).order_by(Device.id).limit(max(1, min(limit, 1000)))
    if kind is not None:
        query = query.where(Device.kind == kind)
    if state is not None:
        query = query.where(Device.state == state)
    if after_id is not None:
        query = query.where(Device.id > after_id)
    scope = scope_clause(principal, Place.__table__.c.path) if principal is not None else None
    if scope is not None:
        query = query.join(Place, Place.id == Device.place_id).where(scope)
    return (await session.scalars(query)).all()


def add_event(
    session: AsyncSession,
    device: Device,
    to: str,
    actor: Actor,
    *,
    note: str,
    at: dt.datetime,
    before: str | None,
) -> None:
    """Record one lifecycle change in device_events and the audit log."""
    session.add(
        DeviceEvent(
            device_id=device.id,
            at=at,
            actor=actor.name,
            channel=actor.channel,
            from_state=before,
            to_state=to,
            note=note,
        )
    )
    record(
        session,
        actor.name,
        actor.channel,
        "device.state",
        "device",
        device.id,
        {"serial": device.serial, "from": before, "to": to, "note": note},
        clock=lambda: at,
    )


async def transition(
    session: AsyncSession, device: Device, to: str, actor: Actor, *, note: str = "", clock: Clock = utcnow
) -> Device:
    """Move ``device`` to state ``to`` if the lifecycle allows it; Conflict otherwise."""
    if to not in STATES:
        raise InvalidInput(f"unknown state {to!r}; one of {', '.join(STATES)}", field="state")
    now = clock()
    current = effective_state(device, now)
    if to not in TRANSITIONS[current]:
        raise Conflict(f"device {device.serial} is {current}; it cannot become {to}")
    before = device.state
    device.state = to
    device.updated_at = now
    if to != "test":
        device.test_until = device.test_by = device.test_from = None
    await session.flush()
    add_event(session, device, to, actor, note=note, at=now, before=before)
    return device
