"""Parked work: alerts and messages that still failed after bounded retries, listed and retried by an operator."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from hub.api.auth import Principal, require_roles
from hub.api.deps import HubDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["parked"])
Operator = Annotated[Principal, Depends(require_roles("operator"))]


@router.get("/parked")
async def parked(
    hub: HubDep,
    _: Operator,
    *,
    state: Literal["parked", "done"] | None = "parked",
    kind: Literal["alert", "message", "feedback"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Parked items, newest first: what failed, why, how often tried (``state=done``: those a retry settled)."""
    items: list[dict[str, Any]] = await hub.cases.parking.items(
        state=state, kind=kind, limit=limit, offset=offset
    )
    return items


@router.post("/parked/{item_id}/retry")
async def retry(item_id: int, hub: HubDep, principal: Operator) -> dict[str, Any]:
    """Try a parked item once more: ``state`` is ``done`` when it went through, else still ``parked`` (new error)."""
    item: dict[str, Any] = await hub.cases.parking.retry(item_id, principal.actor)
    return item
