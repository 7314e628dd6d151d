"""Delivery feedback takes a case's locks in the desk's order (the case, then its steps): no deadlock."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import text

from alerts.casestore import get_case
from alerts.escalation import cancel_planned, list_steps
from alerts.feedback import EscalationFeedback
from alerts.pipeline import AlertPipeline
from alerts.scheduler import EscalationScheduler
from hub.db import Database
from tests.alerts.test_cases_kit import SHANGHAI, Clock, RecordingNotifier, config, fire, make_town

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)


async def _waiting_on_a_lock(db: Database) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    for _ in range(500):  # bounded: the other transaction gets there on its own
        async with db.engine.connect() as conn:
            if (await conn.scalar(query)) or 0:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the feedback never waited for the desk's lock")


# Row locks are PostgreSQL's (SQLite has one writer at a time): this test runs on PostgreSQL only.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_unanswered_call_while_the_desk_accepts(db: Database) -> None:
    town, clock, notifier, cfg = await make_town(db), Clock(T0), RecordingNotifier(), config()
    out = await AlertPipeline(db, cfg, clock, EscalationScheduler(db, notifier, cfg, clock)).handle(
        fire(town)
    )
    step_id = next(iter(notifier.sent.values())).step_id or 0
    feedback = EscalationFeedback(db, clock)
    async with db.session() as desk:
        # The desk holds the case (an accept by SMS) when the call's "no-answer" arrives.
        case = await get_case(desk, out.case_id or 0, lock=True)
        told = asyncio.create_task(feedback.call_unanswered(step_id, "no-answer"))
        await _waiting_on_a_lock(db)
        # The feedback waits for the case holding none of its steps (the desk's order: case, then steps).
        async with db.engine.connect() as other:
            nowait = text("SELECT id FROM escalation_steps WHERE id = :id FOR UPDATE NOWAIT")
            assert await other.scalar(nowait, {"id": step_id}) == step_id
            await other.rollback()
        await cancel_planned(desk, case.id, "accepted")
    await asyncio.wait_for(told, 30)  # a deadlock would abort one of the two here
    async with db.session() as session:
        states = [s.state for s in await list_steps(session, case.id)]
    assert states == ["done", "cancelled", "cancelled", "cancelled", "cancelled"]
