"""Household away mode: while residents are away their activity window raises no alert."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from sqlalchemy import select

from alerts.desk import set_away
from hub.api.auth import ClockDep, Principal, ensure_place_allowed, require_roles
from hub.api.deps import HubDep
from hub.db.cases import HouseholdAway
from hub.db.places import Place

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["households"])
Caller = Annotated[Principal, Depends(require_roles("operator", "responder", "integrator"))]


@router.put("/households/{code}/away")
async def away(
    code: str,
    hub: HubDep,
    principal: Caller,
    clock: ClockDep,
    away: Annotated[bool, Body(embed=True)],
    note: Annotated[str, Body(embed=True, max_length=500)] = "",
) -> dict[str, Any]:
    """Set (true) or end (false) away mode of one household."""
    async with hub.db.session() as session:
        place = await set_away(
            session, code, away, actor=principal.actor, channel="api", now=clock(), note=note
        )
        ensure_place_allowed(principal, place)
        place_id = place.id
    service = getattr(hub, "cases", None)
    if service is not None and service.desk.away_hook is not None:
        service.desk.away_hook(place_id, away)
    return {"household": code, "place_id": place_id, "away": away}


@router.get("/households/away")
async def away_list(hub: HubDep, principal: Caller) -> list[dict[str, Any]]:
    """Households in away mode (within the caller's places)."""
    async with hub.db.session() as session:
        rows = await session.execute(
            select(HouseholdAway, Place).join(Place, Place.id == HouseholdAway.place_id)
        )
        return [
            {"household": p.code, "since": a.since, "set_by": a.set_by, "channel": a.channel, "note": a.note}
            for a, p in rows
            if principal.may_act_in(p.path)
        ]
