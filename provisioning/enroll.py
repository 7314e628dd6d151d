"""Enrollment: a technician enrolls a serial into a household directly, or claims a pre-registered device."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import Database
from hub.db.devices import Device, DeviceClaim
from hub.db.places import Place
from hub.errors import AuthError, Conflict, InvalidInput
from provisioning import claims
from provisioning.apikeys import Principal, ensure_place_allowed
from provisioning.audit import Clock, record, utcnow
from provisioning.credentials import CredentialStore, IssuedSecrets
from provisioning.devices import (
    Actor,
    add_event,
    get_device_by_serial,
    resolve_household,
    resolve_wearer,
    validate_kind,
    validate_transport,
)

__all__ = ["DeviceSpec", "Enrolled", "claim_device", "describe", "enroll_direct", "preregister_batch"]


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """What a technician (or a factory batch) says about one device."""

    serial: str
    kind: str
    household: int | str | None = None
    responder_id: int | None = None
    position: str = ""
    transport: str = "mqtt"
    model: str = ""
    firmware: str = ""
    imei: str | None = None


@dataclass(frozen=True, slots=True)
class Enrolled:
    """The enrolled device and its secrets, shown this once."""

    device: Device
    secrets: IssuedSecrets


def describe(device: Device) -> str:
    """A short phrase naming a device, for Conflict messages."""
    return f"device {device.id} ({device.kind}, serial {device.serial}, {device.state})"


async def _check_unique(session: AsyncSession, serial: str, imei: str | None) -> None:
    existing = await get_device_by_serial(session, serial)
    if existing is not None:
        raise Conflict(f"serial {serial} is already enrolled as {describe(existing)}", field="serial")
    if imei:
        other = (await session.scalars(select(Device).where(Device.imei == imei))).first()
        if other is not None:
            raise Conflict(f"IMEI {imei} is already used by {describe(other)}", field="imei")


async def _placement(
    session: AsyncSession, spec: DeviceSpec, principal: Principal | None, *, kind: str | None
) -> tuple[Place | None, int | None]:
    """Where the device goes: a household, or for a body-cam the grid worker who wears it (kind None: either)."""
    if kind is not None:
        validate_kind(kind)
    validate_transport(spec.transport)
    if spec.household is None and (spec.responder_id is None or kind not in (None, "bodycam")):
        wanted = "household or responder_id" if kind in (None, "bodycam") else "household"
        raise InvalidInput(f"a {kind or 'device'} needs a {wanted}", field="household")
    if spec.responder_id is not None:
        await resolve_wearer(session, spec.responder_id)
    place = None if spec.household is None else await resolve_household(session, spec.household)
    if place is not None and principal is not None:
        ensure_place_allowed(principal, place)
    return place, spec.responder_id


async def enroll_direct(
    session: AsyncSession,
    spec: DeviceSpec,
    *,
    actor: Actor,
    store: CredentialStore,
    principal: Principal | None = None,
    clock: Clock = utcnow,
) -> Enrolled:
    """Enroll ``spec.serial`` straight into its household; 409 on a known serial, 422 on an unknown place."""
    place, wearer = await _placement(session, spec, principal, kind=spec.kind)
    await _check_unique(session, spec.serial, spec.imei)
    now = clock()
    device = Device(
        serial=spec.serial,
        imei=spec.imei or None,
        kind=spec.kind,
        model=spec.model,
        firmware=spec.firmware,
        transport=spec.transport,
        place_id=place.id if place else None,
        responder_id=wearer,
        position=spec.position,
        state="claimed",
        created_at=now,
        updated_at=now,
    )
    session.add(device)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent enrollment of the same serial won the race
        raise Conflict(f"serial {spec.serial} was enrolled concurrently", field="serial") from exc
    add_event(session, device, "claimed", actor, note="enrolled directly", at=now, before=None)
    record(
        session,
        actor.name,
        actor.channel,
        "device.enrolled",
        "device",
        device.id,
        {"serial": spec.serial},
        clock,
    )
    issued = await store.issue(session, device, actor.name, actor.channel)
    return Enrolled(device, issued)


async def preregister_batch(
    session: AsyncSession,
    specs: Sequence[DeviceSpec],
    *,
    batch: str,
    secret_key: str,
    actor: Actor,
    clock: Clock = utcnow,
) -> list[tuple[str, str]]:
    """Register a factory batch (state ``registered``) with one claim code each; returns (serial, code)."""
    for spec in specs:
        validate_kind(spec.kind)
        validate_transport(spec.transport)
        await _check_unique(session, spec.serial, spec.imei)
    now = clock()
    base = {"position": "", "state": "registered", "created_at": now, "updated_at": now}
    rows = [
        {"serial": s.serial, "imei": s.imei or None, "kind": s.kind, "model": s.model, "firmware": s.firmware}
        | {"transport": s.transport, "place_id": None, "responder_id": None}
        | base
        for s in specs
    ]
    await session.execute(insert(Device), rows)
    ids: dict[str, int] = {}
    serials = [s.serial for s in specs]
    for start in range(0, len(serials), 1000):
        chunk = select(Device.serial, Device.id).where(Device.serial.in_(serials[start : start + 1000]))
        ids.update({row[0]: row[1] for row in await session.execute(chunk)})
    codes = [(s.serial, claims.new_claim_code()) for s in specs]
    await session.execute(
        insert(DeviceClaim),
        [
            {
                "device_id": ids[serial],
                "batch": batch,
                "code_hash": claims.code_hash(secret_key, serial, code),
            }
            | {"created_at": now, "used_at": None, "used_by": None}
            for serial, code in codes
        ],
    )
    record(
        session,
        actor.name,
        actor.channel,
        "device.batch_registered",
        "batch",
        batch,
        {"count": len(codes)},
        clock,
    )
    return codes


async def _refuse(db: Database, actor: Actor, serial: str, now: dt.datetime) -> AuthError:
    # Committed on its own, so the refusal counts toward the rate limit although the claim rolls back.
    async with db.session() as session:
        detail = {"serial": serial[:64]}
        record(
            session,
            actor.name,
            actor.channel,
            claims.CLAIM_FAILURE_ACTION,
            "device",
            "?",
            detail,
            lambda: now,
        )
    return claims.refused()


async def claim_device(
    db: Database,
    serial: str,
    code: str,
    spec: DeviceSpec,
    *,
    actor: Actor,
    store: CredentialStore,
    secret_key: str,
    principal: Principal | None = None,
    limit: claims.ClaimLimit | None = None,
    clock: Clock = utcnow,
) -> Enrolled:
    """Assign a pre-registered device by its claim code; unknown serial, wrong and used code look alike."""
    now = clock()
    async with db.session() as session:
        await claims.ensure_claims_allowed(session, actor.name, now, limit or claims.ClaimLimit())
        # Placement is checked before the serial is looked at, so its errors reveal nothing about it.
        place, wearer = await _placement(session, spec, principal, kind=None)
        device = await get_device_by_serial(session, serial)
        claim = await session.get(DeviceClaim, device.id) if device is not None else None
        wanted = claims.code_hash(secret_key, serial, code)
        ok = (
            device is not None
            and device.state == "registered"
            and claim is not None
            and claim.used_at is None
        )
        ok = claims.codes_equal(claim.code_hash if claim else None, wanted) and ok
        if ok and device is not None:
            # The conditional update makes a code single-use even under concurrent claims.
            used = await session.execute(
                update(DeviceClaim)
                .where(DeviceClaim.device_id == device.id, DeviceClaim.used_at.is_(None))
                .values(used_at=now, used_by=actor.name)
            )
            ok = used.rowcount == 1  # type: ignore[attr-defined]
        if ok and device is not None:
            if place is None and device.kind != "bodycam":
                raise InvalidInput(f"a {device.kind} device needs a household", field="household")
            device.place_id = place.id if place else None
            device.responder_id = wearer
            device.position = spec.position
            before = device.state
            device.state = "claimed"
            device.updated_at = now
            add_event(session, device, "claimed", actor, note="claimed with its code", at=now, before=before)
            issued = await store.issue(session, device, actor.name, actor.channel)
            return Enrolled(device, issued)
    raise await _refuse(db, actor, serial, now)
