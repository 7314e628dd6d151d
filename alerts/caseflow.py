"""Changing cases: transitions with their effects, alerts merged into (or clearing) cases, rating requests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.alert import Alert
from alerts.cases import Action, CaseSource, CaseState, EventKind, next_state
from alerts.casestore import CaseConfig, NewCase, PlaceRef, add_event, get_case, open_planned
from alerts.categories import categories
from alerts.dedup import Decision, DedupReason
from alerts.escalation import StepSpec, cancel_planned, plan_steps, policy_for
from alerts.sla import Milestone, SlaClock, Urgency
from hub.db.cases import Case, CaseAlert, EscalationStep
from hub.db.places import Place
from hub.errors import Conflict, InvalidInput

__all__ = ["apply_alert", "open_alert_case", "transition"]


def _still_overdue(case: Case, now: dt.datetime) -> bool:
    due = [d for d in (case.reply_due, case.resolve_due) if d is not None]
    return any(now >= d for d in due)


async def transition(
    session: AsyncSession,
    case: Case,
    action: str,
    *,
    actor: str,
    channel: str,
    now: dt.datetime,
    note: str = "",
    responder_id: int | None = None,
    cfg: CaseConfig | None = None,
) -> Case:
    """Apply ``action``; Conflict naming the current state when not allowed (nothing changes then)."""
    if action == Action.ACCEPT and case.state == CaseState.ACCEPTED:
        same = (responder_id is not None and responder_id == case.accepted_responder_id) or (
            responder_id is None and actor == case.accepted_by
        )
        if same:
            return case  # a repeated accept (an SMS sent twice) changes nothing
        raise Conflict(f"case {case.code} is accepted by {case.accepted_by} already")
    move = next_state(case.state, action)
    note = note.strip()
    if move.action is Action.CANCEL and not note:
        raise InvalidInput(
            "cancelling a case needs a reason (e.g. false alarm: cooking smoke)", field="reason"
        )
    if move.action is Action.CLOSE and not note and case.rating is None:
        raise InvalidInput("closing a case needs the feedback: a rating or a note", field="note")
    if move.action is Action.ACCEPT:
        case.accepted_at, case.accepted_by, case.accepted_responder_id = now, actor, responder_id
        case.overdue = _still_overdue(case, now)
        await cancel_planned(session, case.id, f"accepted by {actor}")
    elif move.action is Action.RESOLVE:
        case.resolved_at, case.overdue = now, False
        await cancel_planned(session, case.id, "resolved")
    elif move.action is Action.CLOSE:
        case.closed_at = now
    elif move.action is Action.CANCEL:
        case.cancel_reason, case.closed_at, case.overdue = note, now, False
        await cancel_planned(session, case.id, "cancelled")
    elif move.action is Action.REOPEN:
        await _reopen(session, case, now, cfg)
    case.state = str(move.after)
    case.updated_at = now
    add_event(
        session,
        case,
        EventKind.TRANSITION,
        actor=actor,
        channel=channel,
        at=now,
        note=note,
        before=str(move.before),
        after=str(move.after),
        detail={"action": str(move.action)},
    )
    return case


async def _reopen(session: AsyncSession, case: Case, now: dt.datetime, cfg: CaseConfig | None) -> None:
    case.reopened += 1
    case.accepted_at = case.accepted_by = case.accepted_responder_id = None
    case.resolved_at = case.closed_at = case.rating = None
    case.overdue = case.escalated = False
    case.escalated_place_id = None
    if cfg is None:
        return
    # The recurrence gets fresh due times and a fresh round of steps, numbered after the old ones.
    policy = cfg.sla.for_category(case.category)
    clock = SlaClock.start(policy, now, cfg.calendar)
    case.accept_due, case.reply_due, case.resolve_due = clock.accept_due, clock.reply_due, clock.resolve_due
    case.reply_due_estimated = Milestone.REPLY in clock.estimated
    await cancel_planned(session, case.id, "reopened")
    steps = await policy_for(session, case.place_path, case.category, urgent=policy.urgency is Urgency.URGENT)
    await plan_steps(session, case.id, case.place_id, steps, now, first_seq=100 * case.reopened)


def _alert_row(case: Case, alert: Alert, now: dt.datetime) -> CaseAlert:
    return CaseAlert(
        case_id=case.id,
        fingerprint=alert.fingerprint,
        name=alert.name,
        device_id=alert.device_id,
        place_id=alert.place_id,
        count=1,
        firing=True,
        first_at=now,
        last_at=now,
        labels=dict(alert.labels),
    )


async def _join(session: AsyncSession, case: Case, alert: Alert, now: dt.datetime) -> None:
    row = await session.get(CaseAlert, (case.id, alert.fingerprint))
    if row is None:
        session.add(_alert_row(case, alert, now))
    else:
        row.count, row.firing, row.last_at = row.count + 1, True, now
    case.alert_count += 1
    case.last_alert_at, case.condition_active, case.updated_at = now, True, now


def _alert_detail(alert: Alert) -> dict[str, Any]:
    return {"fingerprint": alert.fingerprint, "device": alert.device_serial, "value": alert.value}


async def open_alert_case(
    session: AsyncSession,
    cfg: CaseConfig,
    alert: Alert,
    now: dt.datetime,
    *,
    place: PlaceRef | None,
    steps: Sequence[StepSpec] | None = None,
) -> tuple[Case, list[EscalationStep]]:
    """A new case opened by ``alert`` (joined in the case's INSERT); returns its planned steps too."""
    actor = f"rule:{alert.name}"[:120]
    # What people read: the alert's text, or the category's name; never the rule's id.
    texts = dict(alert.text) if alert.text else categories()[alert.category].name.as_dict()
    new = NewCase(
        source=str(CaseSource.SENSOR),
        category=alert.category,
        severity=alert.severity,
        place=place,
        summary=texts["zh-CN"],
        summary_texts=texts,
        fingerprint=alert.fingerprint,
        device_id=alert.device_id,
    )
    case, planned = await open_planned(
        session, cfg, new, actor=actor, channel="system", now=now, steps=steps, alerted=True
    )
    session.add(_alert_row(case, alert, now))
    reason = str(DedupReason.NEW_CASE)
    detail = _alert_detail(alert)
    add_event(
        session, case, EventKind.ALERT, actor=actor, channel="system", at=now, reason=reason, detail=detail
    )
    return case, planned


async def apply_alert(
    session: AsyncSession, cfg: CaseConfig, alert: Alert, decision: Decision, now: dt.datetime
) -> Case | None:
    """Open, update, reopen or clear the case ``decision`` names; the reason goes on the timeline."""
    actor, reason = f"rule:{alert.name}"[:120], str(decision.reason)
    detail = _alert_detail(alert)
    if decision.reason is DedupReason.NO_CASE:
        return None
    if decision.reason is DedupReason.NEW_CASE:
        place = None if alert.place_id is None else await session.get(Place, alert.place_id)
        case, _planned = await open_alert_case(session, cfg, alert, now, place=place)
        return case
    assert decision.case_id is not None
    case = await get_case(session, decision.case_id, lock=True)
    if decision.reason is DedupReason.CLEARED:
        row = await session.get(CaseAlert, (case.id, alert.fingerprint))
        if row is not None:
            row.firing, row.last_at = False, now
        await session.flush()
        left = await session.scalar(
            select(CaseAlert.fingerprint)
            .where(CaseAlert.case_id == case.id, CaseAlert.firing.is_(True))
            .limit(1)
        )
        case.condition_active, case.updated_at = left is not None, now
        note = "condition cleared" if left is None else "one alert cleared; others still hold"
        add_event(
            session,
            case,
            EventKind.CLEARED,
            actor=actor,
            channel="system",
            at=now,
            note=note,
            reason=reason,
            detail=detail,
        )
        return case
    if decision.reason is DedupReason.REOPENED and case.state in (CaseState.RESOLVED, CaseState.CLOSED):
        await transition(
            session,
            case,
            Action.REOPEN,
            actor=actor,
            channel="system",
            now=now,
            note="the condition came back",
            cfg=cfg,
        )
    await _join(session, case, alert, now)
    add_event(
        session, case, EventKind.ALERT, actor=actor, channel="system", at=now, reason=reason, detail=detail
    )
    return case
