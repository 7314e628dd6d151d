"""Reply deadlines stored while their days were estimated, computed again once a holiday notice is on file."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.cases import CaseState, EventKind
from alerts.casestore import CaseConfig, add_event
from hub.db.cases import Case

__all__ = ["firm_up_estimates"]

log = logging.getLogger(__name__)
_WAITING = (CaseState.DISCOVERED, CaseState.ACCEPTED, CaseState.IN_PROGRESS)


async def firm_up_estimates(session: AsyncSession, cfg: CaseConfig, now: dt.datetime) -> int:
    """Cases waiting for their reply whose deadline was estimated: due again from the calendar as it is now.

    Run at start, after an operator added a notice file. A deadline still resting on estimated days stays as it is;
    a reopened case (its deadline counted from the reopening, which is not stored) keeps its flag.
    """
    query = select(Case).where(
        Case.reply_due_estimated.is_(True), Case.state.in_([str(s) for s in _WAITING]), Case.reopened == 0
    )
    firmed = 0
    for case in (await session.execute(query)).scalars():
        workdays = cfg.sla.for_category(case.category).reply_within_workdays
        if workdays is None:
            continue
        due = cfg.calendar.due_after(case.opened_at, workdays)
        if due.estimated:
            continue
        before, case.reply_due, case.reply_due_estimated = case.reply_due, due.at, False
        case.updated_at = now
        add_event(
            session,
            case,
            EventKind.DEADLINE,
            actor="system",
            channel="system",
            at=now,
            note="reply deadline from the State Council notice now on file",
            detail={"reply_due_was": before.isoformat() if before else None, "reply_due": due.at.isoformat()},
        )
        firmed += 1
    if firmed:
        log.info("cases: %d estimated reply deadline(s) computed again from the notices on file", firmed)
    return firmed
