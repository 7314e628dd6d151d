"""Alert rules defined through the API; each change is swapped into the running engine without a restart."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from alerts import rulestore
from drivers import DRIVERS
from hub.api.auth import ClockDep, Principal, require_roles
from hub.api.deps import HubDep
from hub.db.cases import AlertRuleRow

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["rules"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Reader = Annotated[Principal, Depends(require_roles("operator", "integrator"))]
RuleBody = Annotated[dict[str, Any], Body()]


def _out(row: AlertRuleRow) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "type": row.type, "rule": row.body, "updated_at": row.updated_at}


async def _reload(hub: Any) -> None:
    # The lead wires ``hub.cases``; until then rules are stored and take effect at the next start.
    service = getattr(hub, "cases", None)
    if service is not None and service.reloader is not None:
        await service.reloader.reload()


@router.get("/rules")
async def rules(hub: HubDep, _: Reader) -> list[dict[str, Any]]:
    """Stored rules (the drivers' defaults apply under them)."""
    async with hub.db.session() as session:
        return [_out(r) for r in await rulestore.list_rules(session)]


@router.post("/rules", status_code=201)
async def create(body: RuleBody, hub: HubDep, principal: Admin, clock: ClockDep) -> dict[str, Any]:
    """Add a rule; a metric the kind lacks, a zero or negative duration, an unknown place → 422 naming the field."""
    async with hub.db.session() as session:
        row = await rulestore.save_rule(
            session, body, DRIVERS, actor=principal.actor, channel="api", now=clock()
        )
        out = _out(row)
    await _reload(hub)
    return out


@router.get("/rules/{rule_id}")
async def one(rule_id: int, hub: HubDep, _: Reader) -> dict[str, Any]:
    """One stored rule."""
    async with hub.db.session() as session:
        return _out(await rulestore.get_rule(session, rule_id))


@router.put("/rules/{rule_id}")
async def replace(
    rule_id: int, body: RuleBody, hub: HubDep, principal: Admin, clock: ClockDep
) -> dict[str, Any]:
    """Replace a stored rule."""
    async with hub.db.session() as session:
        row = await rulestore.save_rule(
            session, body, DRIVERS, actor=principal.actor, channel="api", now=clock(), rule_id=rule_id
        )
        out = _out(row)
    await _reload(hub)
    return out


@router.delete("/rules/{rule_id}", status_code=204)
async def remove(rule_id: int, hub: HubDep, principal: Admin, clock: ClockDep) -> None:
    """Delete a stored rule."""
    async with hub.db.session() as session:
        await rulestore.delete_rule(session, rule_id, actor=principal.actor, channel="api", now=clock())
    await _reload(hub)
