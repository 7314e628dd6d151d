"""Responders: create, read, update (incl. deactivate), and who answers for a place."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.auth import ClockDep, Principal, require_roles, scope_clause
from hub.api.deps import HubDep, Id, Int64
from hub.api.scope import Scope
from hub.db.people import Responder
from hub.db.places import Place
from provisioning import responders
from provisioning.places import get_place
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


async def _out(session: AsyncSession, responder: Responder, scope: Scope | None = None) -> dict[str, Any]:
    return (await _many(session, [responder], scope or Scope(None)))[0]


async def _many(session: AsyncSession, rows: Sequence[Responder], scope: Scope) -> list[dict[str, Any]]:
    """The responders as served; a limited key sees only the places inside or above its own."""
    fields = ("id", "name", "phone", "language", "role", "duty_hours", "active", "sms_opt_out", "updated_at")
    refs = await responders.place_refs(session, [r.id for r in rows])
    return [
        {f: getattr(r, f) for f in fields}
        | {"places": [code for code, path in refs.get(r.id, []) if scope.related(path)]}
        for r in rows
    ]


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
    principal: Reader,
    *,
    role: str | None = None,
    active: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Responders by id, optionally of one role or activity state; a limited key's: those assigned inside."""
    async with hub.db.session() as session:
        rows = await responders.list_responders(
            session,
            role=role,
            active=active,
            scope=scope_clause(principal, Place.path),
            limit=limit,
            offset=offset,
        )
        return await _many(session, rows, Scope.of(principal))


@router.get("/responders/{responder_id}", response_model=ResponderOut)
async def get_responder(responder_id: Id, hub: HubDep, principal: Reader) -> dict[str, Any]:
    """One responder (a limited key: one assigned inside its places)."""
    scope = Scope.of(principal)
    async with hub.db.session() as session:
        responder = await responders.get_responder(session, responder_id)
        refs = (await responders.place_refs(session, [responder.id])).get(responder.id, [])
        if scope.limited and not any(scope.inside(path) for _, path in refs):
            raise await scope.refuse(hub, f"responder {responder_id}")
        return await _out(session, responder, scope)


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
    principal: Reader,
    clock: ClockDep,
    *,
    role: str | None = None,
    on_duty: bool = False,
) -> list[dict[str, Any]]:
    """Who answers for a place, nearest first (its building leader, then its grid worker, ...)."""
    now = clock()
    scope = Scope.of(principal)
    async with hub.db.session() as session:
        if not scope.inside((await get_place(session, code)).path):
            raise await scope.refuse(hub, f"place {code}")
        matches = await responders.responders_for(session, code, role=role, at=now if on_duty else None)
        shown = await _many(session, [m.responder for m in matches], scope)
        return [
            base
            | {"via": m.via.code, "distance": m.distance, "on_duty": responders.on_duty(m.responder, now)}
            for base, m in zip(shown, matches, strict=True)
        ]
