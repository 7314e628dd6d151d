"""The case loop: allowed and refused transitions (nothing changes then), codes, SLA on the Chinese calendar."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.caseflow import transition
from alerts.cases import Action, CaseState, allowed, case_code, check_category, next_state
from alerts.casestore import CaseFilter, NewCase, get_case, list_cases, open_case, timeline
from hub.db import Database
from hub.errors import Conflict, InvalidInput, NotFound
from provisioning.places import get_place
from tests.alerts.test_cases_kit import SHANGHAI, Clock, config, make_town

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)


def test_state_machine_table() -> None:
    assert next_state("discovered", "accept").after is CaseState.ACCEPTED
    assert next_state("resolved", "close").after is CaseState.CLOSED
    with pytest.raises(Conflict, match="discovered"):
        next_state("discovered", "close")
    with pytest.raises(Conflict, match="cancelled"):
        next_state("cancelled", "reopen")
    with pytest.raises(InvalidInput):
        next_state("discovered", "explode")
    assert allowed(CaseState.CLOSED) == [Action.REOPEN]
    assert case_code(dt.datetime(2026, 11, 27, 16, 30, tzinfo=dt.UTC), 42) == "C-20261128-0042"
    with pytest.raises(InvalidInput):
        check_category("weather")


async def _citizen_case(
    db: Database, clock: Clock, category: str = "citizen_report", at: str = "T-D-S-C-G-B-U01"
) -> int:
    async with db.session() as session:
        place = await get_place(session, at)
        new = NewCase(
            source="citizen", category=category, severity="minor", place=place, description="lift broken"
        )
        case = await open_case(
            session, config(), new, actor="citizen:+8613900000000", channel="api", now=clock()
        )
        return case.id


async def test_the_loop_and_its_refusals(db: Database) -> None:
    await make_town(db)
    clock = Clock(T0)
    case_id = await _citizen_case(db, clock)
    cfg = config()

    async def act(action: str, actor: str = "op", note: str = "", responder: int | None = None) -> str:
        async with db.session() as session:
            case = await get_case(session, case_id)
            await transition(
                session,
                case,
                action,
                actor=actor,
                channel="api",
                now=clock(),
                note=note,
                responder_id=responder,
                cfg=cfg,
            )
            return case.state

    with pytest.raises(Conflict, match="discovered"):
        await act("close", note="done")
    assert await act("accept", actor="alice", responder=1) == "accepted"
    assert await act("accept", actor="alice", responder=1) == "accepted"  # the same person again: no change
    with pytest.raises(Conflict, match="accepted by alice"):
        await act("accept", actor="bob", responder=2)
    assert await act("start", actor="alice") == "in_progress"
    assert await act("resolve", actor="alice", note="lift repaired") == "resolved"
    with pytest.raises(InvalidInput) as err:
        await act("close")
    assert err.value.field == "note"
    assert await act("close", note="resident satisfied") == "closed"
    async with db.session() as session:
        case = await get_case(session, case_id)
        lines = await timeline(session, case_id)
        assert case.accepted_by == "alice" and case.closed_at == T0
        moves = [(e.from_state, e.to_state, e.channel) for e in lines if e.kind == "transition"]
        assert moves == [
            ("discovered", "accepted", "api"),
            ("accepted", "in_progress", "api"),
            ("in_progress", "resolved", "api"),
            ("resolved", "closed", "api"),
        ]
    with pytest.raises(NotFound):
        async with db.session() as session:
            await get_case(session, "C-19990101-0001")


async def test_cancel_needs_a_reason(db: Database) -> None:
    await make_town(db)
    clock = Clock(T0)
    case_id = await _citizen_case(db, clock)
    async with db.session() as session:
        case = await get_case(session, case_id)
        with pytest.raises(InvalidInput) as err:
            await transition(session, case, "cancel", actor="op", channel="api", now=clock())
        assert err.value.field == "reason" and case.state == "discovered"
        await transition(
            session, case, "cancel", actor="op", channel="voice", now=clock(), note="false alarm: test"
        )
        assert case.state == "cancelled" and case.cancel_reason == "false alarm: test"


async def test_ordinary_sla_across_new_year_and_a_makeup_day(db: Database) -> None:
    await make_town(db)
    # 31 Dec 2025: 1-3 Jan 2026 are off, Sunday 4 Jan is a make-up working day; 5 working days end on 8 Jan.
    clock = Clock(dt.datetime(2025, 12, 31, 10, 0, tzinfo=SHANGHAI))
    case_id = await _citizen_case(db, clock)
    async with db.session() as session:
        case = await get_case(session, case_id)
        assert case.urgency == "ordinary" and case.accept_due is None
        assert case.reply_due == dt.datetime(2026, 1, 9, tzinfo=SHANGHAI)
        assert case.code == "C-20251231-0001"


async def test_urgent_sla_and_list_filters(db: Database) -> None:
    await make_town(db)
    clock = Clock(T0)
    panic = await _citizen_case(db, clock, category="panic")
    other = await _citizen_case(db, clock, at="T-D-S-C-G-B-U02")
    async with db.session() as session:
        case = await get_case(session, panic)
        assert case.accept_due == T0 + dt.timedelta(minutes=5) and case.urgency == "urgent"
        u1 = await get_place(session, "T-D-S-C-G-B-U01")
        by_place = await list_cases(session, CaseFilter(place_path=u1.path))
        assert [c.id for c in by_place] == [panic]
        assert [c.id for c in await list_cases(session, CaseFilter(category="citizen_report"))] == [other]
        assert await list_cases(session, CaseFilter(scopes=())) == []
        assert len(await list_cases(session, CaseFilter(state="discovered"))) == 2
