"""The escalation scheduler: takes due steps from the database, notifies, flags and escalates overdue cases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.cases import CaseState, EventKind
from alerts.casestore import CaseConfig, add_event
from alerts.contracts import Channel, Notification, Notifier
from alerts.directory import Directory, PlaceInfo, ResponderInfo
from alerts.escalation import LEVEL_ROLE, parent_place
from alerts.feedback import next_step_now
from alerts.ratings import request_ratings
from hub.db import Database
from hub.db.cases import Case, EscalationStep
from hub.db.places import Place
from provisioning.places import ancestor_ids

__all__ = ["EscalationScheduler", "TickReport"]

_ACTIVE = [str(s) for s in (CaseState.DISCOVERED, CaseState.ACCEPTED, CaseState.IN_PROGRESS)]


@dataclass
class TickReport:
    """What one tick did."""

    steps: int = 0
    notifications: int = 0
    overdue: int = 0
    escalated: int = 0
    ratings: int = 0


def _key(step_id: int, responder_id: int, channel: str) -> str:
    return f"step:{step_id}:responder:{responder_id}:{channel}"


class EscalationScheduler:
    """Each tick takes due steps (FOR UPDATE SKIP LOCKED on PostgreSQL) and enqueues their notifications."""

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        cfg: CaseConfig,
        clock: Callable[[], dt.datetime],
        *,
        batch: int = 100,
        directory: Directory | None = None,
    ) -> None:
        self.db, self.notifier, self.cfg, self.clock, self.batch = db, notifier, cfg, clock, batch
        # Places and responders for the steps (a directory not started reads the database).
        self.directory = directory or Directory(db)

    async def tick(self) -> TickReport:
        """Ask resolved cases for a rating, run due steps, then flag and escalate overdue cases."""
        report = TickReport()
        now = self.clock()
        async with self.db.session() as session:
            report.ratings = await request_ratings(session, self.notifier, now)
        while True:
            async with self.db.session() as session:
                done, sent = await self._due_steps(session, now)
            report.steps, report.notifications = report.steps + done, report.notifications + sent
            if done < self.batch:
                break
        async with self.db.session() as session:
            report.overdue, report.escalated = await self._supervise(session, now)
        if report.escalated:
            async with self.db.session() as session:
                done, sent = await self._due_steps(session, now)
            report.steps, report.notifications = report.steps + done, report.notifications + sent
        return report

    async def run_case(
        self,
        session: AsyncSession,
        case: Case,
        now: dt.datetime,
        planned: Sequence[EscalationStep] | None = None,
    ) -> int:
        """Run the due steps of a case the caller holds (locked or just opened), in the caller's transaction.

        ``planned``: the steps the caller has just stored, so they need not be read back.
        """
        if planned is None:
            query = select(EscalationStep).where(
                EscalationStep.case_id == case.id,
                EscalationStep.state == "planned",
                EscalationStep.due_at <= now,
            )
            planned = list((await session.execute(query)).scalars())
        due = [s for s in planned if s.state == "planned" and s.due_at <= now]
        sent = 0
        for step in sorted(due, key=lambda s: (s.due_at, s.id)):
            sent += await self._run(session, step, now, case)
        return sent

    async def _due_steps(self, session: AsyncSession, now: dt.datetime) -> tuple[int, int]:
        query = (
            select(EscalationStep)
            .where(EscalationStep.state == "planned", EscalationStep.due_at <= now)
            .order_by(EscalationStep.due_at, EscalationStep.id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
        )
        steps = list((await session.execute(query)).scalars())
        sent = 0
        for step in steps:
            sent += await self._run(session, step, now)
        return len(steps), sent

    async def _run(
        self, session: AsyncSession, step: EscalationStep, now: dt.datetime, held: Case | None = None
    ) -> int:
        case = held
        if case is None:
            # The desk locks a case before its steps; waiting here for the case, with the step locked, could
            # deadlock (PostgreSQL): a case locked now is being answered, so its step waits for the next tick.
            locked = select(Case).where(Case.id == step.case_id).with_for_update(skip_locked=True)
            case = (await session.execute(locked)).scalars().first()
            if case is None:
                return 0
        # Policy steps wait for an accept; an overdue escalation also informs a level up after it.
        live = case.state == CaseState.DISCOVERED or (step.origin == "overdue" and case.state in _ACTIVE)
        if not live:
            step.state, step.done_at, step.note = "skipped", now, f"case is {case.state}"
            return 0
        chain = await self.directory.chain(session, step.place_id)
        matches = [] if not chain else await self.directory.responders(session, chain, step.role, now)
        same = step.place_id == case.place_id
        where = _names(chain) if same else await self._where(session, case)
        notes = [self._notification(case, step, r, chain, now, where) for r in matches]
        step.state, step.done_at = "done", now
        step.responder_ids = [r.id for r in matches]
        if not matches:
            step.note = f"no {step.role} on duty for the place"
            await next_step_now(session, step.case_id, now)  # nobody to wait for
        detail = {
            "step": step.id,
            "seq": step.seq,
            "role": step.role,
            "channel": step.channel,
            "responders": step.responder_ids,
            "origin": step.origin,
        }
        add_event(
            session,
            case,
            EventKind.STEP,
            actor="escalation",
            channel="system",
            at=now,
            note=step.note,
            detail=detail,
        )
        # Last: the outbox INSERT flushes the case's pending rows with it, in one batch per table.
        return await self.notifier.enqueue(session, notes) if notes else 0

    def _notification(
        self,
        case: Case,
        step: EscalationStep,
        responder: ResponderInfo,
        chain: Sequence[PlaceInfo],
        now: dt.datetime,
        where: list[str] | None = None,
    ) -> Notification:
        channel: Channel = "voice" if step.channel == "voice" else "sms"
        place = chain[-1] if chain else None
        facts = {
            "category": case.category,
            "severity": case.severity,
            # Where the case is, from the community down (a street's responders know their district and street).
            "place": where or (None if place is None else place.name),
            "place_code": None if place is None else place.code,
            # The street the message's cost counts against (paths run district → street → …).
            "street_id": chain[1].id if len(chain) > 1 else None,
            "opened_at": case.opened_at.isoformat(),
            # What happened in each language (a person's report: as they typed it).
            "summary": case.summary_texts or case.summary or case.description,
            "count": case.alert_count,
            "escalated": step.origin == "overdue",
        }
        return Notification(
            idempotency_key=_key(step.id, responder.id, channel),
            kind="case_alert",
            channel=channel,
            responder_id=responder.id,
            phone=responder.phone,
            language="en" if responder.language == "en" else "zh-CN",
            case_id=case.id,
            case_code=case.code,
            step_id=step.id,
            due_at=now,
            facts=facts,
        )

    async def _where(self, session: AsyncSession, case: Case) -> list[str]:
        """The names on the case's place path below the street: community › grid › building › household."""
        return _names(await self.directory.chain(session, case.place_id) if case.place_path else [])

    async def _supervise(self, session: AsyncSession, now: dt.datetime) -> tuple[int, int]:
        """Flag cases past a due time; escalate each one level up (again after ``reescalate_after``)."""
        late = or_(
            and_(Case.state == CaseState.DISCOVERED, Case.accept_due <= now),
            Case.reply_due <= now,
            Case.resolve_due <= now,
        )
        query = select(Case).where(Case.state.in_(_ACTIVE), late).with_for_update(skip_locked=True)
        overdue = escalated = 0
        for case in (await session.execute(query)).scalars():
            due = [case.reply_due, case.resolve_due]
            if case.state == CaseState.DISCOVERED:
                due.append(case.accept_due)
            passed = [d for d in due if d is not None and now >= d]
            if not passed:
                continue
            if not case.overdue:
                case.overdue, overdue = True, overdue + 1
                add_event(
                    session,
                    case,
                    EventKind.OVERDUE,
                    actor="sla",
                    channel="system",
                    at=now,
                    detail={"due": min(passed).isoformat()},
                )
            if await self._escalate(session, case, now):
                escalated += 1
        return overdue, escalated

    async def _escalate(self, session: AsyncSession, case: Case, now: dt.datetime) -> bool:
        last = await session.scalar(
            select(EscalationStep.due_at)
            .where(EscalationStep.case_id == case.id, EscalationStep.origin == "overdue")
            .order_by(EscalationStep.due_at.desc())
            .limit(1)
        )
        if last is not None and now < last + self.cfg.reescalate_after.get(
            case.urgency, dt.timedelta(days=1)
        ):
            return False
        current_id = case.escalated_place_id or case.place_id
        current = await session.get(Place, current_id) if current_id is not None else None
        up = None if current is None else await parent_place(session, current)
        if up is None:
            return False  # already at the top (or no place): the overdue flag stays for the supervisors
        seq = 1000 + len(ancestor_ids(current.path)) if current is not None else 1000
        session.add(
            EscalationStep(
                case_id=case.id,
                seq=seq,
                role=LEVEL_ROLE[up.level],
                channel="voice" if case.urgency == "urgent" else "sms",
                wait_s=int(self.cfg.reescalate_after.get(case.urgency, dt.timedelta(days=1)).total_seconds()),
                origin="overdue",
                place_id=up.id,
                state="planned",
                due_at=now,
                responder_ids=[],
            )
        )
        case.escalated, case.escalated_place_id, case.updated_at = True, up.id, now
        add_event(
            session,
            case,
            EventKind.ESCALATED,
            actor="sla",
            channel="system",
            at=now,
            note=f"overdue: escalated from {current.level if current else '?'} to {up.level} {up.code}",
            detail={"from": current.code if current else None, "to": up.code, "level": up.level},
        )
        await session.flush()
        return True


def _names(chain: Sequence[PlaceInfo]) -> list[str]:
    return [p.name for p in chain if p.level not in ("district", "street")]
