"""Places: CRUD, move, subtree, and CSV/YAML import and export."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.api.auth import (
    ClockDep,
    CurrentPrincipal,
    Principal,
    ensure_place_allowed,
    require_roles,
    scope_clause,
)
from hub.api.deps import HubDep, Int64
from hub.api.scope import Scope
from hub.db.places import Place
from hub.errors import InvalidInput
from provisioning import placefile, places
from provisioning.places import PlaceData

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/places", tags=["places"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Exporter = Annotated[Principal, Depends(require_roles("admin", "operator", "integrator"))]
FileFormat = Literal["csv", "yaml"]
MEDIA = {"csv": "text/csv; charset=utf-8", "yaml": "application/yaml; charset=utf-8"}


class PlaceOut(BaseModel):
    """A place as served."""

    id: int
    code: str
    level: str
    name: str
    name_en: str | None
    parent: str | None
    path: str
    lat: float | None
    lon: float | None
    outline: dict[str, Any] | None
    contacts: list[dict[str, Any]]
    updated_at: dt.datetime


class MoveBody(BaseModel):
    """Where to move a place (with its subtree)."""

    parent: str


class ImportOut(BaseModel):
    """What an import created and updated."""

    created: list[str]
    updated: list[str]
    unchanged: int
    dry_run: bool


async def _out(session: AsyncSession, rows: Sequence[Place]) -> list[dict[str, Any]]:
    parent_ids = {p.parent_id for p in rows if p.parent_id is not None}
    codes = {p.id: p.code for p in rows}
    missing = parent_ids - set(codes)
    if missing:
        codes |= dict(
            (await session.execute(select(Place.id, Place.code).where(Place.id.in_(missing)))).all()
        )
    fields = (
        "id",
        "code",
        "level",
        "name",
        "name_en",
        "path",
        "lat",
        "lon",
        "outline",
        "contacts",
        "updated_at",
    )
    return [{f: getattr(p, f) for f in fields} | {"parent": codes.get(p.parent_id or 0)} for p in rows]


@router.get("", response_model=list[PlaceOut])
async def list_places(
    hub: HubDep,
    principal: CurrentPrincipal,
    *,
    parent: str | None = None,
    level: str | None = None,
    q: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Places in path order, within the caller's places."""
    async with hub.db.session() as session:
        scope = scope_clause(principal, Place.path)
        rows = await places.list_places(
            session, parent=parent, level=level, search=q, scope=scope, limit=limit, offset=offset
        )
        return await _out(session, rows)


@router.post("", status_code=201, response_model=PlaceOut)
async def create_place(body: PlaceData, hub: HubDep, principal: Admin, clock: ClockDep) -> dict[str, Any]:
    """Add a place under its parent."""
    async with hub.db.session() as session:
        place = await places.create_place(session, body, actor=principal.actor, channel="api", clock=clock)
        return (await _out(session, [place]))[0]


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {
            "description": "the file: CSV with a header row, or YAML `places:` with one mapping per place",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/yaml": {
                    "schema": {
                        "type": "object",
                        "required": ["places"],
                        "properties": {"places": {"type": "array", "items": {"type": "object"}}},
                    }
                },
            },
        }
    },
)
async def export_places(
    hub: HubDep, principal: Exporter, format: FileFormat = "csv", root: str | None = None
) -> Response:
    """The hierarchy (or one subtree) as a file the import accepts; a limited key exports its own subtree."""
    scope = Scope.of(principal)
    async with hub.db.session() as session:
        if root is None and scope.paths is not None:
            if len(scope.paths) != 1:
                raise InvalidInput(
                    "this key is limited to several places: give root, one of them", field="root"
                )
            top = await session.scalar(select(Place).where(Place.path == scope.paths[0]))
            root = None if top is None else top.code
        else:
            top = await places.get_place(session, root, field="root") if root else None
        if scope.limited and (top is None or not scope.inside(top.path)):
            raise await scope.refuse(hub, f"place {root}")
        data = await placefile.export_places(session, format, root=top)
    name = f"places-{root or 'all'}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    return Response(data, media_type=MEDIA[format], headers=headers)


@router.post("/import", response_model=ImportOut)
async def import_places(
    request: Request,
    hub: HubDep,
    principal: Admin,
    clock: ClockDep,
    *,
    format: FileFormat = "csv",
    encoding: str = "utf-8",
    dry_run: bool = False,
) -> dict[str, Any]:
    """Import a CSV or YAML body: every row valid, or nothing applied (422 lists the bad lines)."""
    raw = await request.body()
    async with hub.db.session() as session:
        report = await placefile.import_places(
            session,
            raw,
            format,
            actor=principal.actor,
            channel="api",
            encoding=encoding,
            dry_run=dry_run,
            clock=clock,
        )
    return {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "dry_run": dry_run,
    }


@router.get("/{code}", response_model=PlaceOut)
async def get_place(code: str, hub: HubDep, principal: CurrentPrincipal) -> dict[str, Any]:
    """One place."""
    async with hub.db.session() as session:
        place = await places.get_place(session, code)
        ensure_place_allowed(principal, place)
        return (await _out(session, [place]))[0]


@router.get("/{code}/subtree", response_model=list[PlaceOut])
async def get_subtree(
    code: str, hub: HubDep, principal: CurrentPrincipal, level: str | None = None
) -> list[dict[str, Any]]:
    """The place and everything below it, parents first."""
    async with hub.db.session() as session:
        place = await places.get_place(session, code)
        ensure_place_allowed(principal, place)
        return await _out(session, await places.subtree(session, place, level=level))


@router.patch("/{code}", response_model=PlaceOut)
async def update_place(
    code: str, hub: HubDep, principal: Admin, clock: ClockDep, changes: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """Change names, position, outline or contacts."""
    async with hub.db.session() as session:
        place = await places.update_place(
            session, code, changes, actor=principal.actor, channel="api", clock=clock
        )
        return (await _out(session, [place]))[0]


@router.post("/{code}/move", response_model=PlaceOut)
async def move_place(
    code: str, body: MoveBody, hub: HubDep, principal: Admin, clock: ClockDep
) -> dict[str, Any]:
    """Move a place and its subtree under a new parent; devices stay attached."""
    async with hub.db.session() as session:
        place = await places.move_place(
            session, code, body.parent, actor=principal.actor, channel="api", clock=clock
        )
        return (await _out(session, [place]))[0]


@router.delete("/{code}", status_code=204)
async def delete_place(code: str, hub: HubDep, principal: Admin, clock: ClockDep) -> Response:
    """Delete a place without children, devices or assignments (else 409)."""
    async with hub.db.session() as session:
        await places.delete_place(session, code, actor=principal.actor, channel="api", clock=clock)
    return Response(status_code=204)
