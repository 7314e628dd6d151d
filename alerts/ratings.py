"""Asking for feedback: a rating request to the reporter or the household once a case is resolved."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.cases import CaseState, EventKind
from alerts.casestore import add_event
from alerts.contracts import Notification, Notifier
from hub.db.cases import Case, CaseEvent
from hub.db.places import Place

__all__ = ["RATING", "rating_contact", "request_ratings"]

# The reason of the "feedback" timeline line marking a resolved case whose reporter or household was asked.
RATING = "rating_request"
# Cases resolved longer ago are not asked any more (the scheduler asks within a tick).
RATING_WINDOW = dt.timedelta(days=1)


def _language_of(phone: str) -> str:
    return "zh-CN" if phone.startswith("+86") else "en"


async def rating_contact(session: AsyncSession, case: Case) -> tuple[str, str] | None:
    """(phone, language) to ask for a rating: the citizen reporter, else the household's first contact phone."""
    if case.reporter_phone:
        return case.reporter_phone, _language_of(case.reporter_phone)
    home = None if case.household_id is None else await session.get(Place, case.household_id)
    for contact in home.contacts or [] if home is not None else []:
        phone = contact.get("phone") if isinstance(contact, dict) else None
        if phone:
            language = contact.get("language")
            return str(phone), language if language in ("zh-CN", "en") else _language_of(str(phone))
    return None


async def request_ratings(
    session: AsyncSession, notifier: Notifier, now: dt.datetime, *, limit: int = 100
) -> int:
    """Ask for a rating (one ``rating_request`` SMS) for each case resolved since its last request.

    A ``rating_request`` line on the timeline marks the case as asked (also when there is no phone), in
    the same transaction as the SMS; the idempotency key keeps it to one per resolution.
    """
    asked = select(CaseEvent.id).where(
        CaseEvent.case_id == Case.id,
        CaseEvent.kind == str(EventKind.FEEDBACK),
        CaseEvent.reason == RATING,
        CaseEvent.at >= Case.resolved_at,
    )
    query = (
        select(Case)
        .where(Case.state == CaseState.RESOLVED, Case.resolved_at >= now - RATING_WINDOW, ~exists(asked))
        .order_by(Case.resolved_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    notes = []
    for case in (await session.execute(query)).scalars():
        contact = await rating_contact(session, case)
        note = f"rating requested from {contact[0]}" if contact else "no phone to ask for a rating"
        add_event(
            session,
            case,
            EventKind.FEEDBACK,
            actor="rating",
            channel="system",
            at=now,
            note=note,
            reason=RATING,
        )
        if contact is None:
            continue
        facts = {
            "category": case.category,
            "place_id": case.place_id,
            "opened_at": case.opened_at.isoformat(),
        }
        # No step id: a failed rating request must not make the escalation call anyone.
        notes.append(
            Notification(
                f"rating:{case.id}:{case.reopened}",
                "rating_request",
                "sms",
                None,
                contact[0],
                "en" if contact[1] == "en" else "zh-CN",
                case.id,
                case.code,
                None,
                now,
                facts,
            )
        )
    return await notifier.enqueue(session, notes) if notes else 0
