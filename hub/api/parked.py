"""Parked work: alerts and messages that still failed after bounded retries, listed and retried by an operator."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from hub.api.auth import Principal, require_roles
from hub.api.deps import HubDep, Id, Int64
from hub.api.scope import refuse_limited

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["parked"])
Operator = Annotated[Principal, Depends(require_roles("operator"))]


@router.get("/parked")
async def parked(
    hub: HubDep,
    principal: Operator,
    *,
    state: Literal["parked", "done"] | None = "parked",
    kind: Literal["alert", "message", "feedback"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Parked items, newest first: what failed, why, how often tried (``state=done``: those a retry settled)."""
    # Parked work is the street's, not a place's: it names no place a limited key could be checked against.
    refuse_limited(principal, "parked work")
    items: list[dict[str, Any]] = await hub.cases.parking.items(
        state=state, kind=kind, limit=limit, offset=offset
    )
    return items


@router.post("/parked/{item_id}/retry")
async def retry(item_id: Id, hub: HubDep, principal: Operator) -> dict[str, Any]:
    """Try a parked item once more: ``state`` is ``done`` when it went through, else still ``parked`` (new error)."""
    refuse_limited(principal, "parked work")
    item: dict[str, Any] = await hub.cases.parking.retry(item_id, principal.actor)
    return item
