"""API keys (admin only), the caller's own identity, and the audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from hub.api.auth import ClockDep, CurrentPrincipal, Principal, require_roles
from hub.api.deps import HubDep, Id
from hub.api.scope import refuse_limited
from hub.db.people import ApiKey
from hub.logmask import Masker
from provisioning import apikeys, audit

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["access"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Auditor = Annotated[Principal, Depends(require_roles("admin", "operator"))]


async def _key_admin(principal: Admin) -> Principal:
    # A key limited to places must not mint or list keys for every place (nor an unlimited one).
    refuse_limited(principal, "managing API keys")
    return principal


KeyAdmin = Annotated[Principal, Depends(_key_admin)]


class KeyCreate(BaseModel):
    """A new key: its holder's name, role, and the places it is limited to."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=120)
    role: str
    places: list[str] = Field(default_factory=list, description="place codes; empty = everywhere")
    responder_id: Id | None = None


class KeyOut(BaseModel):
    """A key as listed; the secret is never returned again."""

    id: str
    name: str
    role: str
    places: list[str]
    responder_id: int | None
    created_by: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class KeyCreated(KeyOut):
    """A key just created, with its full text: store it now, it is not shown again."""

    key: str


class WhoAmI(BaseModel):
    """The caller as the hub sees it."""

    key_id: str
    name: str
    role: str
    place_ids: list[int] | None
    responder_id: int | None


class AuditOut(BaseModel):
    """One audit event."""

    model_config = {"from_attributes": True}

    id: int
    at: dt.datetime
    actor: str
    channel: str
    action: str
    object_type: str
    object_id: str
    detail: dict[str, Any]


def _key_out(key: ApiKey, places: list[str]) -> dict[str, Any]:
    fields = ("id", "name", "role", "responder_id", "created_by", "created_at", "last_used_at", "revoked_at")
    return {name: getattr(key, name) for name in fields} | {"places": places}


@router.post("/keys", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyCreate, hub: HubDep, principal: KeyAdmin, clock: ClockDep) -> dict[str, Any]:
    """Create a key; the response is the only time its text is shown."""
    async with hub.db.session() as session:
        key, text = await apikeys.create_key(
            session,
            name=body.name,
            role=body.role,
            places=body.places,
            responder_id=body.responder_id,
            actor=principal.actor,
            channel="api",
            clock=clock,
        )
    return _key_out(key, sorted(set(body.places))) | {"key": text}


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(
    hub: HubDep, _: KeyAdmin, include_revoked: Annotated[bool, Query()] = False
) -> list[dict[str, Any]]:
    """Every key (active ones unless ``include_revoked``)."""
    async with hub.db.session() as session:
        infos = await apikeys.list_keys(session, include_revoked=include_revoked)
    return [_key_out(info.key, list(info.place_codes)) for info in infos]


@router.delete("/keys/{key_id}", status_code=204)
async def revoke_key(key_id: str, hub: HubDep, principal: KeyAdmin, clock: ClockDep) -> Response:
    """Revoke a key at once (it stays listed with ``include_revoked``)."""
    async with hub.db.session() as session:
        await apikeys.revoke_key(session, key_id, actor=principal.actor, channel="api", clock=clock)
    return Response(status_code=204)


@router.get("/whoami", response_model=WhoAmI)
async def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
    """The caller's key, role and places."""
    places = None if principal.place_ids is None else sorted(principal.place_ids)
    return {
        "key_id": principal.key_id,
        "name": principal.name,
        "role": principal.role,
        "place_ids": places,
        "responder_id": principal.responder_id,
    }


@router.get("/audit", response_model=list[AuditOut])
async def list_audit(
    hub: HubDep,
    principal: Auditor,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    actor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Id | None = None,
    request: Request,
) -> list[dict[str, Any]]:
    """Audit events, newest first; page back with ``before_id`` (keys not limited to places; secrets masked)."""
    refuse_limited(principal, "the audit trail")
    async with hub.db.session() as session:
        events = await audit.list_events(
            session,
            object_type=object_type,
            object_id=object_id,
            actor=actor,
            limit=limit,
            before_id=before_id,
        )
    masker: Masker = getattr(request.app.state, "masker", None) or Masker()
    return [AuditOut.model_validate(e).model_dump() | {"detail": masker.walk(e.detail)} for e in events]
