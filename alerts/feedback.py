"""Delivery feedback from the notifiers: a failed SMS becomes a call, an unanswered call makes the next step due."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.cases import EventKind
from alerts.casestore import add_event
from alerts.contracts import Channel
from hub.db import Database
from hub.db.cases import Case, EscalationStep
from hub.errors import NotFound

__all__ = ["EscalationFeedback", "next_step_now"]


async def next_step_now(session: AsyncSession, case_id: int, now: dt.datetime) -> EscalationStep | None:
    """Make the case's next planned step due at ``now``; returns it (None when no step is left)."""
    nxt = await session.scalar(
        select(EscalationStep)
        .where(EscalationStep.case_id == case_id, EscalationStep.state == "planned")
        .order_by(EscalationStep.due_at, EscalationStep.seq, EscalationStep.id)
        .limit(1)
    )
    if nxt is not None and nxt.due_at > now:
        nxt.due_at = now
    return nxt


class EscalationFeedback:
    """Implements ``alerts.contracts.DeliveryFeedback`` on the stored steps."""

    def __init__(self, db: Database, clock: Callable[[], dt.datetime]) -> None:
        self.db, self.clock = db, clock

    async def _step(self, session: AsyncSession, step_id: int) -> tuple[EscalationStep, Case]:
        # The desk's order: the case, then its steps. Holding the step first and then waiting for the case
        # (the foreign key check of the timeline INSERT) deadlocks with an accept on PostgreSQL as soon
        # as the next step's UPDATE flushes before that INSERT.
        case_id = await session.scalar(select(EscalationStep.case_id).where(EscalationStep.id == step_id))
        case = None if case_id is None else await session.get(Case, case_id, with_for_update=True)
        step = None if case is None else await session.get(EscalationStep, step_id, with_for_update=True)
        if step is None or case is None:
            raise NotFound(f"no escalation step {step_id}")
        return step, case

    async def delivery_failed(self, step_id: int, channel: Channel, reason: str) -> None:
        """An SMS failed: plan a call to the same people now (once per step); a failed call: next step now."""
        now = self.clock()
        async with self.db.session() as session:
            step, case = await self._step(session, step_id)
            if channel != "sms":
                await self._advance(session, step, case, now, f"{channel} failed: {reason}")
                return
            key = f"fallback of step {step.id}"
            exists = await session.scalar(
                select(EscalationStep.id).where(EscalationStep.case_id == case.id, EscalationStep.note == key)
            )
            if exists is not None:
                return  # a second failure report of the same SMS plans no second call
            fallback = EscalationStep(
                case_id=case.id,
                seq=step.seq,
                role=step.role,
                channel="voice",
                wait_s=step.wait_s,
                origin="fallback",
                place_id=step.place_id,
                state="planned",
                due_at=now,
                responder_ids=[],
                note=key,
            )
            session.add(fallback)
            add_event(
                session,
                case,
                EventKind.STEP,
                actor="notifier",
                channel="system",
                at=now,
                note=f"sms failed ({reason}): calling instead",
                detail={"step": step.id, "fallback": "voice"},
            )

    async def call_unanswered(self, step_id: int, reason: str) -> None:
        """Nobody picked up: the next step is due now."""
        now = self.clock()
        async with self.db.session() as session:
            step, case = await self._step(session, step_id)
            await self._advance(session, step, case, now, f"call unanswered: {reason}")

    async def _advance(
        self, session: AsyncSession, step: EscalationStep, case: Case, now: dt.datetime, note: str
    ) -> None:
        nxt = await next_step_now(session, case.id, now)
        detail = {"step": step.id, "next": None if nxt is None else nxt.id}
        add_event(
            session,
            case,
            EventKind.STEP,
            actor="notifier",
            channel="system",
            at=now,
            note=note,
            detail=detail,
        )
