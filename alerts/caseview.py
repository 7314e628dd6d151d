"""Cases as people and the API see them: where (place code, name, the names up the chain), which device, what."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.cases import Case
from hub.db.devices import Device
from hub.db.places import Place
from provisioning.places import ancestor_ids

__all__ = ["CASE_FIELDS", "case_view", "case_views"]

# The stored columns shown as they are (``place_path`` stays for filters and scripts; people read the names).
CASE_FIELDS = (
    "id",
    "code",
    "source",
    "category",
    "severity",
    "urgency",
    "state",
    "fingerprint",
    "place_path",
    "summary",
    "summary_texts",
    "description",
    "alert_count",
    "condition_active",
    "overdue",
    "escalated",
    "reopened",
    "accepted_by",
    "cancel_reason",
    "rating",
    "accept_due",
    "reply_due",
    # True when reply_due counted days no State Council notice decides (estimated; docs/sla.md).
    "reply_due_estimated",
    "resolve_due",
    "opened_at",
    "last_alert_at",
    "accepted_at",
    "resolved_at",
    "closed_at",
)


async def case_views(session: AsyncSession, cases: Sequence[Case]) -> list[dict[str, Any]]:
    """Each case's fields with its place (code, name, chain of names root first) and device (serial, kind).

    Two statements whatever the number of cases: the places of every chain, and the devices.
    """
    chains = {c.id: ancestor_ids(c.place_path) if c.place_path else [] for c in cases}
    place_ids = {pid for chain in chains.values() for pid in chain}
    places: dict[int, tuple[str, str]] = {}
    if place_ids:
        rows = await session.execute(select(Place.id, Place.code, Place.name).where(Place.id.in_(place_ids)))
        places = {pid: (code, name) for pid, code, name in rows}
    device_ids = {c.device_id for c in cases if c.device_id is not None}
    devices: dict[int, tuple[str, str]] = {}
    if device_ids:
        found = await session.execute(
            select(Device.id, Device.serial, Device.kind).where(Device.id.in_(device_ids))
        )
        devices = {did: (serial, kind) for did, serial, kind in found}
    out = []
    for case in cases:
        chain = [places[pid] for pid in chains[case.id] if pid in places]
        here = places.get(case.place_id) if case.place_id is not None else None
        device = devices.get(case.device_id) if case.device_id is not None else None
        out.append(
            {f: getattr(case, f) for f in CASE_FIELDS}
            | {
                "place_code": None if here is None else here[0],
                "place_name": None if here is None else here[1],
                "place_chain": [name for _code, name in chain],
                "device_serial": None if device is None else device[0],
                "device_kind": None if device is None else device[1],
            }
        )
    return out


async def case_view(session: AsyncSession, case: Case) -> dict[str, Any]:
    """One case as ``case_views`` shows it."""
    return (await case_views(session, [case]))[0]
