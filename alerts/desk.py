"""The case desk: intake from people, transitions with permission checks, away mode, and ``CaseActions``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.caseflow import transition
from alerts.cases import OPEN_STATES, Action, CaseState, EventKind, check_category
from alerts.casestore import CaseConfig, NewCase, add_event, get_case, open_case
from alerts.contracts import CaseView
from alerts.feedback import next_step_now
from hub.db import Database
from hub.db.cases import Case, EscalationStep, HouseholdAway
from hub.db.people import Responder, responder_places
from hub.db.places import Place
from hub.errors import Conflict, Forbidden, InvalidInput
from provisioning.audit import record
from provisioning.places import get_place
from provisioning.responders import normalise_phone

__all__ = ["AwayHook", "CaseDesk", "Intake", "set_away", "view"]

AwayHook = Callable[[int, bool], None]
_URGENT = ("fire", "panic", "sos", "fall")


class Intake(BaseModel):
    """A case reported by a person: a citizen or a grid worker on the round."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    source: Literal["citizen", "grid_worker"]
    category: str
    place: str = Field(min_length=1)
    description: str = Field(min_length=1, max_length=4000)
    reporter_phone: str | None = None

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        return check_category(value)

    @field_validator("reporter_phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else normalise_phone(value)


def view(case: Case) -> CaseView:
    """The case as a phone reply sees it."""
    return CaseView(
        case.id,
        case.code,
        case.state,
        case.category,
        case.severity,
        case.place_id,
        case.household_id,
        case.opened_at,
    )


async def responder_paths(session: AsyncSession, responder_id: int) -> list[str]:
    """The place paths a responder answers for."""
    query = select(Place.path).join(responder_places, responder_places.c.place_id == Place.id)
    return list(
        (await session.execute(query.where(responder_places.c.responder_id == responder_id))).scalars()
    )


async def set_away(
    session: AsyncSession,
    code: str,
    away: bool,
    *,
    actor: str,
    channel: str,
    now: dt.datetime,
    note: str = "",
) -> Place:
    """Put a household in away mode or bring it back; only households have one."""
    place = await get_place(session, code, field="place")
    if place.level != "household":
        raise InvalidInput(f"away mode is for households; {code} is a {place.level}", field="place")
    row = await session.get(HouseholdAway, place.id)
    if away and row is None:
        session.add(
            HouseholdAway(place_id=place.id, since=now, set_by=actor[:120], channel=channel, note=note)
        )
    elif not away and row is not None:
        await session.execute(delete(HouseholdAway).where(HouseholdAway.place_id == place.id))
    record(
        session, actor, channel, "away" if away else "back", "place", place.id, {"note": note}, lambda: now
    )
    return place


class CaseDesk:
    """Cases as people touch them (API, SMS, voice); implements ``alerts.contracts.CaseActions``."""

    def __init__(
        self,
        db: Database,
        cfg: CaseConfig,
        clock: Callable[[], dt.datetime],
        away_hook: AwayHook | None = None,
    ) -> None:
        self.db, self.cfg, self.clock, self.away_hook = db, cfg, clock, away_hook

    async def intake(
        self, data: Intake, *, actor: str, channel: str, scopes: tuple[str, ...] | None = None
    ) -> Case:
        """Open a case from a person's report (same intake as sensors: SLA, steps, timeline)."""
        async with self.db.session() as session:
            place = await get_place(session, data.place, field="place")
            if scopes is not None and not any(place.path.startswith(p) for p in scopes):
                raise Forbidden(f"{actor} may not report for place {data.place}")
            severity = "critical" if data.category in _URGENT else "minor"
            new = NewCase(
                data.source,
                data.category,
                severity,
                place,
                summary=data.description[:200],
                description=data.description,
                reporter_phone=data.reporter_phone,
            )
            return await open_case(session, self.cfg, new, actor=actor, channel=channel, now=self.clock())

    async def act(
        self,
        ref: str | int,
        action: str,
        *,
        actor: str,
        channel: str,
        note: str = "",
        responder_id: int | None = None,
        scopes: tuple[str, ...] | None = None,
    ) -> Case:
        """Apply a transition for someone limited to ``scopes`` (place paths) or a responder's places."""
        async with self.db.session() as session:
            case = await get_case(session, ref, lock=True)
            if responder_id is not None and scopes is None:
                scopes = tuple(await responder_paths(session, responder_id))
            if scopes is not None and not any((case.place_path or "").startswith(p) for p in scopes):
                raise Forbidden(f"{actor} may not act on case {case.code}: it is outside their places")
            return await transition(
                session,
                case,
                action,
                actor=actor,
                channel=channel,
                now=self.clock(),
                note=note,
                responder_id=responder_id,
                cfg=self.cfg,
            )

    async def latest_open_case_for(self, responder_id: int) -> CaseView | None:
        """The newest open case whose steps notified this responder."""
        async with self.db.session() as session:
            query = (
                select(EscalationStep, Case)
                .join(Case, Case.id == EscalationStep.case_id)
                .where(EscalationStep.state == "done", Case.state.in_([str(s) for s in OPEN_STATES]))
                .order_by(EscalationStep.done_at.desc(), EscalationStep.id.desc())
                .limit(500)
            )
            for step, case in await session.execute(query):
                if responder_id in (step.responder_ids or []):
                    return view(case)
        return None

    async def _by_responder(
        self, code: str, responder_id: int, channel: str, action: str, note: str
    ) -> CaseView:
        async with self.db.session() as session:
            responder = await session.get(Responder, responder_id)
        actor = f"responder:{responder_id}:{responder.name if responder else '?'}"
        case = await self.act(
            code, action, actor=actor, channel=channel, note=note, responder_id=responder_id
        )
        return view(case)

    async def accept(self, case_code: str, responder_id: int, channel: str, note: str = "") -> CaseView:
        """The responder takes the case: escalation stops."""
        return await self._by_responder(case_code, responder_id, channel, Action.ACCEPT, note)

    async def resolve(self, case_code: str, responder_id: int, channel: str, note: str = "") -> CaseView:
        """The responder handled it (an accepted case may be resolved directly)."""
        return await self._by_responder(case_code, responder_id, channel, Action.RESOLVE, note)

    async def pass_on(self, case_code: str, responder_id: int, channel: str) -> CaseView:
        """The responder cannot take it: the next step is due now."""
        now = self.clock()
        async with self.db.session() as session:
            case = await get_case(session, case_code, lock=True)
            paths = await responder_paths(session, responder_id)
            if not any((case.place_path or "").startswith(p) for p in paths):
                raise Forbidden(f"responder {responder_id} may not act on case {case.code}")
            if case.state != CaseState.DISCOVERED:
                raise Conflict(f"case {case.code} is {case.state}; only a discovered case can be passed on")
            nxt = await next_step_now(session, case.id, now)
            add_event(
                session,
                case,
                EventKind.STEP,
                actor=f"responder:{responder_id}",
                channel=channel,
                at=now,
                note="passed on",
                detail={"next": None if nxt is None else nxt.id},
            )
            return view(case)

    async def rate(self, case_code: str, score: int, phone: str) -> CaseView:
        """The reporter's or resident's score (1-5) after resolution: the feedback that closes the case."""
        if not 1 <= score <= 5:
            raise InvalidInput(f"a rating is 1 to 5, not {score}", field="score")
        now = self.clock()
        async with self.db.session() as session:
            case = await get_case(session, case_code, lock=True)
            if case.reporter_phone is not None and case.reporter_phone != phone:
                raise Forbidden(f"only the reporter may rate case {case.code}")
            if case.state != CaseState.RESOLVED:
                raise Conflict(f"case {case.code} is {case.state}; only a resolved case can be rated")
            case.rating = score
            add_event(
                session,
                case,
                EventKind.RATED,
                actor=f"phone:{phone}",
                channel="sms",
                at=now,
                detail={"score": score},
            )
            await transition(
                session,
                case,
                Action.CLOSE,
                actor=f"phone:{phone}",
                channel="sms",
                now=now,
                note=f"rated {score}",
            )
            return view(case)

    async def set_away(self, phone: str, away: bool) -> list[int]:
        """Households listing ``phone`` among their contacts go away / come back; returns their ids."""
        now, changed = self.clock(), []
        async with self.db.session() as session:
            homes = (await session.execute(select(Place).where(Place.level == "household"))).scalars()
            for home in homes:
                if any(c.get("phone") == phone for c in home.contacts or []):
                    await set_away(session, home.code, away, actor=f"phone:{phone}", channel="sms", now=now)
                    changed.append(home.id)
        for place_id in changed:
            if self.away_hook is not None:
                self.away_hook(place_id, away)
        return changed
