"""Alert rules defined through the API; each change is swapped into the running engine without a restart."""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Body, Depends, Request

from alerts import rulestore
from drivers import DRIVERS
from hub.api.auth import ClockDep, Principal, require_roles
from hub.api.deps import HubDep, Id
from hub.api.scope import PlacePaths, Scope
from hub.db.cases import AlertRuleRow
from hub.errors import HubError, InvalidInput

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["rules"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Reader = Annotated[Principal, Depends(require_roles("operator", "integrator"))]
RuleBody = Annotated[dict[str, Any], Body()]


def _out(row: AlertRuleRow, hub: Any = None) -> dict[str, Any]:
    out = {"id": row.id, "name": row.name, "type": row.type, "rule": row.body, "updated_at": row.updated_at}
    if hub is not None:
        # Failed evaluations of this rule since the start, and the last error (docs/rules.md).
        out["evaluation"] = hub.evaluator.failures.of(row.name)
    return out


async def _reload(hub: Any) -> None:
    # The lead wires ``hub.cases``; until then rules are stored and take effect at the next start.
    service = getattr(hub, "cases", None)
    if service is not None and service.reloader is not None:
        await service.reloader.reload()


async def _visible(hub: Any, scope: Scope, row: AlertRuleRow, paths: PlacePaths) -> bool:
    """A limited key reads rules for everywhere, for places above or inside its own, or for its devices."""
    if not scope.limited:
        return True
    device = row.body.get("device")
    if device is not None and not scope.inside(await paths.of_serial(str(device))):
        return False
    return row.body.get("place") is None or scope.related(str(row.body["place"]))


@router.get("/rules")
async def rules(hub: HubDep, principal: Reader) -> list[dict[str, Any]]:
    """Stored rules (the drivers' defaults apply under them); a limited key's: those that reach its places."""
    scope, paths = Scope.of(principal), PlacePaths(hub)
    async with hub.db.session() as session:
        rows = await rulestore.list_rules(session)
    return [_out(r, hub) for r in rows if await _visible(hub, scope, r, paths)]


@router.get("/rules/failures")
async def failures(hub: HubDep, principal: Reader) -> list[dict[str, Any]]:
    """Every rule (stored or a driver's default) whose evaluation failed since the start, most failures first.

    A limited key does not see the failures of stored rules it may not read.
    """
    scope, paths = Scope.of(principal), PlacePaths(hub)
    hidden: set[str] = set()
    if scope.limited:
        async with hub.db.session() as session:
            rows = await rulestore.list_rules(session)
        shown = [(r.name, await _visible(hub, scope, r, paths)) for r in rows]
        hidden = {name for name, ok in shown if not ok} - {name for name, ok in shown if ok}
    found = hub.evaluator.failures
    return [
        {"rule": name} | found.of(name) for name, _count in found.counts.most_common() if name not in hidden
    ]


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


MAX_YAML = 256 * 1024


@router.post("/rules/import", status_code=201)
async def import_yaml(request: Request, hub: HubDep, principal: Admin, clock: ClockDep) -> dict[str, Any]:
    """Store every rule of a YAML document (a list, or ``rules:``); one bad rule and none is stored."""
    raw = await request.body()
    if len(raw) > MAX_YAML:
        raise InvalidInput(f"a rules file is at most {MAX_YAML // 1024} KiB", field="body")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"not UTF-8 YAML: {exc}", field="body") from exc
    if isinstance(data, dict) and set(data) == {"rules"}:
        data = data["rules"]
    if not isinstance(data, list) or not data:
        raise InvalidInput(
            "a rules file is a non-empty list of rules (or a mapping with a 'rules' list)", field="body"
        )
    saved = []
    async with hub.db.session() as session:
        for index, body in enumerate(data):
            try:
                row = await rulestore.save_rule(
                    session, body, DRIVERS, actor=principal.actor, channel="api", now=clock()
                )
            except HubError as exc:
                # The transaction rolls back: a file goes in whole or not at all.
                exc.field = f"rules[{index}]" + (f".{exc.field}" if exc.field else "")
                exc.message = f"rules[{index}]: {exc.message}"
                raise
            saved.append(_out(row))
    await _reload(hub)
    return {"stored": len(saved), "rules": saved}


@router.get("/rules/{rule_id}")
async def one(rule_id: Id, hub: HubDep, principal: Reader) -> dict[str, Any]:
    """One stored rule."""
    scope = Scope.of(principal)
    async with hub.db.session() as session:
        row = await rulestore.get_rule(session, rule_id)
    if not await _visible(hub, scope, row, PlacePaths(hub)):
        raise await scope.refuse(hub, f"rule {rule_id}")
    return _out(row, hub)


@router.put("/rules/{rule_id}")
async def replace(
    rule_id: Id, body: RuleBody, hub: HubDep, principal: Admin, clock: ClockDep
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
async def remove(rule_id: Id, hub: HubDep, principal: Admin, clock: ClockDep) -> None:
    """Delete a stored rule."""
    async with hub.db.session() as session:
        await rulestore.delete_rule(session, rule_id, actor=principal.actor, channel="api", now=clock())
    await _reload(hub)
