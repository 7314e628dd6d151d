"""Dedup and correlation: one case per fingerprint, one per building fire, reopen, and the reasons recorded."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from alerts.caseflow import transition
from alerts.casestore import get_case, timeline
from alerts.dedup import AlertFacts, DedupReason, classify
from alerts.pipeline import AlertPipeline
from hub.db import Database
from hub.db.cases import Case, CaseAlert
from tests.alerts.test_cases_kit import SHANGHAI, Clock, config, fire, make_town

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)


def _facts(firing: bool = True) -> AlertFacts:
    return AlertFacts("f" * 16, "fire", firing, 5, T0)


def test_classify_reasons() -> None:
    assert (
        classify(_facts(), open_case=None, correlated=None, recently_closed=None).reason
        is DedupReason.NEW_CASE
    )
    repeat = classify(_facts(), open_case=(3, "accepted"), correlated=9, recently_closed=None)
    assert (repeat.reason, repeat.case_id) == (DedupReason.REPEAT, 3)
    back = classify(_facts(), open_case=(3, "resolved"), correlated=None, recently_closed=None)
    assert back.reason is DedupReason.REOPENED
    joined = classify(_facts(), open_case=None, correlated=9, recently_closed=4)
    assert (joined.reason, joined.case_id) == (DedupReason.CORRELATED, 9)
    again = classify(_facts(), open_case=None, correlated=None, recently_closed=4)
    assert (again.reason, again.case_id) == (DedupReason.REOPENED, 4)
    cleared = classify(_facts(False), open_case=(3, "discovered"), correlated=None, recently_closed=None)
    assert cleared.reason is DedupReason.CLEARED
    orphan = classify(_facts(False), open_case=None, correlated=None, recently_closed=None)
    assert orphan.reason is DedupReason.NO_CASE


async def test_repeats_count_on_one_case(db: Database) -> None:
    town = await make_town(db)
    clock = Clock(T0)
    pipe = AlertPipeline(db, config(), clock)
    first = await pipe.handle(fire(town))
    clock.advance(minutes=1)
    second = await pipe.handle(fire(town))
    assert first.reason is DedupReason.NEW_CASE and second.reason is DedupReason.REPEAT
    assert first.case_id == second.case_id
    async with db.session() as session:
        case = await get_case(session, first.case_id or 0)
        assert case.alert_count == 2
        assert case.code.startswith("C-20261128-")
        reasons = [e.reason for e in await timeline(session, case.id) if e.kind == "alert"]
        assert reasons == ["new_case", "repeat"]


async def test_three_alarms_in_one_building_are_one_fire(db: Database) -> None:
    town = await make_town(db)
    clock = Clock(T0)
    pipe = AlertPipeline(db, config(), clock)
    a = await pipe.handle(fire(town, "U1", serial="SMK-1"))
    clock.advance(minutes=3)
    b = await pipe.handle(fire(town, "U2", serial="SMK-2"))
    clock.advance(minutes=4)
    c = await pipe.handle(fire(town, "U2", serial="SMK-3"))
    assert [o.reason for o in (a, b, c)] == [
        DedupReason.NEW_CASE,
        DedupReason.CORRELATED,
        DedupReason.CORRELATED,
    ]
    assert a.case_id == b.case_id == c.case_id
    # Outside the window, the same building's next fire is another case.
    clock.advance(minutes=11)
    d = await pipe.handle(fire(town, "U1", serial="SMK-4"))
    assert d.reason is DedupReason.NEW_CASE and d.case_id != a.case_id
    async with db.session() as session:
        rows = (
            (await session.execute(select(CaseAlert).where(CaseAlert.case_id == a.case_id))).scalars().all()
        )
        assert len(rows) == 3
        assert (await session.scalar(select(Case.alert_count).where(Case.id == a.case_id))) == 3


async def test_cleared_condition_does_not_close(db: Database) -> None:
    town = await make_town(db)
    clock = Clock(T0)
    pipe = AlertPipeline(db, config(), clock)
    alert = fire(town)
    opened = await pipe.handle(alert)
    clock.advance(minutes=2)
    cleared = await pipe.handle(alert.resolved(1.0))
    assert cleared.reason is DedupReason.CLEARED and cleared.case_id == opened.case_id
    async with db.session() as session:
        case = await get_case(session, opened.case_id or 0)
        assert case.state == "discovered" and not case.condition_active
        assert any(e.note == "condition cleared" for e in await timeline(session, case.id))
    # A resolved alert that never had a case is noted and dropped.
    stray = fire(town, serial="SMK-9").resolved(1.0)
    assert (await pipe.handle(stray)).reason is DedupReason.NO_CASE


async def test_recurrence_after_closing_reopens(db: Database) -> None:
    town = await make_town(db)
    clock = Clock(T0)
    cfg = config()
    pipe = AlertPipeline(db, cfg, clock)
    first = await pipe.handle(fire(town))
    async with db.session() as session:
        case = await get_case(session, first.case_id or 0)
        for action, note in (("accept", ""), ("resolve", "cooking smoke"), ("close", "resident thanked us")):
            await transition(
                session, case, action, actor="op", channel="api", now=clock(), note=note, cfg=cfg
            )
    clock.advance(hours=5)
    again = await pipe.handle(fire(town))
    assert again.reason is DedupReason.REOPENED and again.case_id == first.case_id
    async with db.session() as session:
        case = await get_case(session, first.case_id or 0)
        assert case.state == "discovered" and case.reopened == 1 and case.closed_at is None
    # Beyond the reopen window a recurrence is a new case.
    async with db.session() as session:
        case = await get_case(session, first.case_id or 0)
        for action, note in (("accept", ""), ("resolve", "ok"), ("close", "ok")):
            await transition(
                session, case, action, actor="op", channel="api", now=clock(), note=note, cfg=cfg
            )
    clock.advance(hours=25)
    late = await pipe.handle(fire(town))
    assert late.reason is DedupReason.NEW_CASE and late.case_id != first.case_id
