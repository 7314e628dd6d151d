"""Responders: create, read, update (incl. deactivate), and who answers for a place."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.auth import ClockDep, Principal, require_roles
from hub.api.deps import HubDep, Id, Int64
from hub.db.people import Responder
from provisioning import responders
from provisioning.responders import ResponderData

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["responders"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Reader = Annotated[Principal, Depends(require_roles("admin", "operator", "integrator"))]


class ResponderOut(BaseModel):
    """A responder as served."""

    id: int
    name: str
    phone: str
    language: str
    role: str
    places: list[str]
    duty_hours: list[dict[str, Any]] | None
    active: bool
    sms_opt_out: bool
    updated_at: dt.datetime


class MatchOut(ResponderOut):
    """A responder for a place, through the place they are assigned to."""

    via: str
    distance: int
    on_duty: bool


async def _out(session: AsyncSession, responder: Responder) -> dict[str, Any]:
    fields = ("id", "name", "phone", "language", "role", "duty_hours", "active", "sms_opt_out", "updated_at")
    codes = await responders.place_codes(session, responder.id)
    return {f: getattr(responder, f) for f in fields} | {"places": codes}


@router.post("/responders", status_code=201, response_model=ResponderOut)
async def create_responder(
    body: ResponderData, hub: HubDep, principal: Admin, clock: ClockDep
) -> dict[str, Any]:
    """Add a responder (phone in E.164, spaces allowed) and assign places."""
    async with hub.db.session() as session:
        responder = await responders.create_responder(
            session, body, actor=principal.actor, channel="api", clock=clock
        )
        return await _out(session, responder)


@router.get("/responders", response_model=list[ResponderOut])
async def list_responders(
    hub: HubDep,
    _: Reader,
    *,
    role: str | None = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Responders by id, optionally of one role or activity state."""
    query = select(Responder).order_by(Responder.id).limit(limit).offset(offset)
    if role is not None:
        query = query.where(Responder.role == role)
    if active is not None:
        query = query.where(Responder.active.is_(active))
    async with hub.db.session() as session:
        return [await _out(session, r) for r in (await session.execute(query)).scalars()]


@router.get("/responders/{responder_id}", response_model=ResponderOut)
async def get_responder(responder_id: Id, hub: HubDep, _: Reader) -> dict[str, Any]:
    """One responder."""
    async with hub.db.session() as session:
        return await _out(session, await responders.get_responder(session, responder_id))


@router.patch("/responders/{responder_id}", response_model=ResponderOut)
async def update_responder(
    responder_id: Id,
    hub: HubDep,
    principal: Admin,
    clock: ClockDep,
    changes: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """Change fields; ``places`` replaces the assignment; ``active: false`` deactivates."""
    async with hub.db.session() as session:
        responder = await responders.update_responder(
            session, responder_id, changes, actor=principal.actor, channel="api", clock=clock
        )
        return await _out(session, responder)


@router.get("/places/{code}/responders", response_model=list[MatchOut])
async def responders_for_place(
    code: str,
    hub: HubDep,
    _: Reader,
    clock: ClockDep,
    *,
    role: str | None = None,
    on_duty: bool = False,
) -> list[dict[str, Any]]:
    """Who answers for a place, nearest first (its building leader, then its grid worker, ...)."""
    now = clock()
    async with hub.db.session() as session:
        matches = await responders.responders_for(session, code, role=role, at=now if on_duty else None)
        out = []
        for m in matches:
            base = await _out(session, m.responder)
            extra = {
                "via": m.via.code,
                "distance": m.distance,
                "on_duty": responders.on_duty(m.responder, now),
            }
            out.append(base | extra)
        return out
