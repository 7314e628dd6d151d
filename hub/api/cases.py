"""Cases: intake from people, list/filter, one case with its timeline and steps, transitions, escalation policies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from sqlalchemy import select

from alerts.casestore import CaseFilter, get_case, list_cases, timeline
from alerts.caseview import case_view, case_views
from alerts.desk import CaseDesk, Intake
from alerts.escalation import list_steps, save_policy
from hub.api.auth import ClockDep, Principal, require_roles
from hub.api.deps import HubDep, Int64
from hub.api.scope import PlacePaths, Scope
from hub.db.cases import Case, EscalationPolicyRow
from hub.errors import Forbidden
from provisioning.places import get_place

__all__ = ["desk_of", "router"]

router = APIRouter(prefix="/api/v1", tags=["cases"])
Caller = Annotated[Principal, Depends(require_roles("operator", "responder", "integrator"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]


def desk_of(hub: HubDep) -> CaseDesk:
    """The running hub's desk."""
    desk: CaseDesk = hub.cases.desk
    return desk


DeskDep = Annotated[CaseDesk, Depends(desk_of)]


def _scopes(principal: Principal) -> tuple[str, ...] | None:
    return None if principal.place_ids is None else tuple(principal.place_paths)


async def _out(hub: Any, case: Case) -> dict[str, Any]:
    async with hub.db.session() as session:
        return await case_view(session, case)


@router.post("/cases", status_code=201)
async def intake(body: Intake, desk: DeskDep, hub: HubDep, principal: Caller) -> dict[str, Any]:
    """A case from a citizen or a grid worker: same intake as the sensors (SLA, escalation steps)."""
    case = await desk.intake(body, actor=principal.actor, channel="api", scopes=_scopes(principal))
    return await _out(hub, case)


@router.get("/cases")
async def cases(
    hub: HubDep,
    principal: Caller,
    *,
    state: Literal["discovered", "accepted", "in_progress", "resolved", "closed", "cancelled"] | None = None,
    category: str | None = None,
    place: str | None = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[Int64, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Cases newest first, filtered by state, category, place subtree (code) and overdue; only the caller's places."""
    async with hub.db.session() as session:
        path = None if place is None else (await get_place(session, place, field="place")).path
        flt = CaseFilter(state, category, path, overdue, _scopes(principal), limit, offset)
        return await case_views(session, await list_cases(session, flt))


@router.get("/cases/{ref}")
async def case(ref: str, hub: HubDep, principal: Caller) -> dict[str, Any]:
    """One case (by code or id) with its timeline and its planned and done escalation steps."""
    async with hub.db.session() as session:
        found = await get_case(session, ref)
        scopes = _scopes(principal)
        if scopes is not None and not any((found.place_path or "").startswith(p) for p in scopes):
            raise Forbidden(f"case {ref} is outside your places")
        events = await timeline(session, found.id)
        steps = await list_steps(session, found.id)
        shown = await case_view(session, found)
    line_fields = ("at", "kind", "from_state", "to_state", "actor", "channel", "reason", "note", "detail")
    step_fields = (
        "id",
        "seq",
        "role",
        "channel",
        "wait_s",
        "origin",
        "place_id",
        "state",
        "due_at",
        "done_at",
        "responder_ids",
        "note",
    )
    return shown | {
        "timeline": [{f: getattr(e, f) for f in line_fields} for e in events],
        "steps": [{f: getattr(s, f) for f in step_fields} for s in steps],
    }


@router.post("/cases/{ref}/{action}")
async def act(
    ref: str,
    action: Literal["accept", "start", "resolve", "close", "cancel", "reopen"],
    desk: DeskDep,
    hub: HubDep,
    principal: Caller,
    note: Annotated[str, Body(embed=True, max_length=4000)] = "",
) -> dict[str, Any]:
    """A transition; a responder acts only on cases in their places; 409 names the current state."""
    changed = await desk.act(
        ref,
        action,
        actor=principal.actor,
        channel="api",
        note=note,
        responder_id=principal.responder_id,
        scopes=_scopes(principal),
    )
    return await _out(hub, changed)


@router.put("/escalation-policies")
async def put_policy(
    body: Annotated[dict[str, Any], Body()], hub: HubDep, principal: Admin, clock: ClockDep
) -> dict[str, Any]:
    """Create or replace a policy by name: ordered steps (role, channel sms/voice, wait_s) for a place subtree."""
    async with hub.db.session() as session:
        row = await save_policy(session, body, actor=principal.actor, channel="api", now=clock())
        return {
            "id": row.id,
            "name": row.name,
            "place_id": row.place_id,
            "category": row.category,
            "steps": row.steps,
        }


@router.get("/escalation-policies")
async def policies(hub: HubDep, principal: Caller) -> list[dict[str, Any]]:
    """Stored policies (without any, the built-in steps apply); a limited key's: those that reach its places."""
    scope, paths = Scope.of(principal), PlacePaths(hub)
    async with hub.db.session() as session:
        rows = (
            (await session.execute(select(EscalationPolicyRow).order_by(EscalationPolicyRow.id)))
            .scalars()
            .all()
        )
    known = await paths.of_places(r.place_id for r in rows)
    return [
        {"id": r.id, "name": r.name, "place_id": r.place_id, "category": r.category, "steps": r.steps}
        for r in rows
        if r.place_id is None or scope.related(known.get(r.place_id))
    ]
