"""Escalation: stored steps due in order, stop on accept, survive a restart, overdue goes up to the district."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.caseflow import transition
from alerts.casestore import CaseConfig, NewCase, get_case, open_case, timeline
from alerts.escalation import list_steps, policy_for, save_policy
from alerts.feedback import EscalationFeedback
from alerts.pipeline import AlertPipeline
from alerts.scheduler import EscalationScheduler
from hub.db import Database
from hub.errors import InvalidInput, NotFound
from provisioning.places import get_place
from tests.alerts.test_cases_kit import SHANGHAI, Clock, RecordingNotifier, Town, config, fire, make_town

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)


async def _setup(db: Database) -> tuple[Town, Clock, RecordingNotifier, CaseConfig, AlertPipeline]:
    town = await make_town(db)
    clock, notifier, cfg = Clock(T0), RecordingNotifier(), config()
    scheduler = EscalationScheduler(db, notifier, cfg, clock)
    return town, clock, notifier, cfg, AlertPipeline(db, cfg, clock, scheduler)


async def test_steps_run_in_order_and_stop_on_accept(db: Database) -> None:
    town, clock, notifier, cfg, pipe = await _setup(db)
    out = await pipe.handle(fire(town))
    # The first step (building leader, SMS) is due at once and was sent by the pipeline.
    assert notifier.phones() == [town.phones["building_leader"]]
    note = next(iter(notifier.sent.values()))
    assert note.case_code == out.case_code and note.channel == "sms" and note.facts["category"] == "fire"
    scheduler = EscalationScheduler(db, notifier, cfg, clock)
    assert (await scheduler.tick()).steps == 0  # nothing more is due yet
    clock.advance(seconds=120)
    assert (await scheduler.tick()).notifications == 1
    assert notifier.phones()[-1] == town.phones["grid_worker"]
    async with db.session() as session:
        case = await get_case(session, out.case_id or 0)
        await transition(session, case, "accept", actor="grid", channel="sms", now=clock(), responder_id=1)
    clock.advance(hours=1)
    assert (await scheduler.tick()).notifications == 0
    async with db.session() as session:
        states = [s.state for s in await list_steps(session, out.case_id or 0)]
    assert states == ["done", "done", "cancelled", "cancelled", "cancelled"]


async def test_restart_between_steps_loses_and_repeats_nothing(db: Database) -> None:
    town, clock, _, cfg, pipe = await _setup(db)
    out = await pipe.handle(fire(town))
    clock.advance(seconds=130)
    # A new scheduler (as after a restart) with a fresh outbox double: it sends only the step now due.
    fresh = RecordingNotifier()
    report = await EscalationScheduler(db, fresh, cfg, clock).tick()
    assert report.steps == 1 and fresh.phones() == [town.phones["grid_worker"]]
    again = await EscalationScheduler(db, fresh, cfg, clock).tick()
    assert again.steps == 0 and len(fresh.sent) == 1
    async with db.session() as session:
        done = [s.seq for s in await list_steps(session, out.case_id or 0) if s.state == "done"]
    assert done == [0, 1]


async def test_overdue_escalates_up_to_the_district(db: Database) -> None:
    town, clock, notifier, cfg, _ = await _setup(db)
    scheduler = EscalationScheduler(db, notifier, cfg, clock)
    async with db.session() as session:
        street = await get_place(session, "T-D-S")
        new = NewCase(
            source="citizen", category="panic", severity="critical", place=street, description="help"
        )
        case = await open_case(session, cfg, new, actor="citizen", channel="api", now=clock())
        case_id = case.id
    await scheduler.tick()
    clock.advance(minutes=5)  # urgent: accept within 5 minutes
    report = await scheduler.tick()
    assert report.overdue == 1 and report.escalated == 1
    assert town.phones["district"] in notifier.phones()
    district_call = [n for n in notifier.sent.values() if n.phone == town.phones["district"]]
    assert district_call[0].channel == "voice" and district_call[0].facts["escalated"] is True
    async with db.session() as session:
        case = await get_case(session, case_id)
        assert case.overdue and case.escalated and case.escalated_place_id == town.ids["D"]
        kinds = [e.kind for e in await timeline(session, case_id)]
        assert "overdue" in kinds and "escalated" in kinds
    clock.advance(hours=1)
    assert (await scheduler.tick()).escalated == 0  # the district is the top


async def test_household_case_goes_one_level_at_a_time(db: Database) -> None:
    town, clock, notifier, cfg, pipe = await _setup(db)
    out = await pipe.handle(fire(town))
    scheduler = EscalationScheduler(db, notifier, cfg, clock)
    levels = []
    for _ in range(3):
        clock.advance(minutes=5)
        await scheduler.tick()
        async with db.session() as session:
            case = await get_case(session, out.case_id or 0)
            levels.append(case.escalated_place_id)
    assert levels == [town.ids["B"], town.ids["G"], town.ids["C"]]


async def test_sms_failure_falls_back_to_a_call_once(db: Database) -> None:
    town, clock, notifier, cfg, pipe = await _setup(db)
    out = await pipe.handle(fire(town))
    step_id = next(iter(notifier.sent.values())).step_id or 0
    feedback = EscalationFeedback(db, clock)
    await feedback.delivery_failed(step_id, "sms", "30003 unreachable")
    await feedback.delivery_failed(step_id, "sms", "30003 unreachable")
    await EscalationScheduler(db, notifier, cfg, clock).tick()
    calls = [n for n in notifier.sent.values() if n.channel == "voice"]
    assert [c.phone for c in calls] == [town.phones["building_leader"]]
    # An unanswered call makes the next planned step (grid worker SMS) due now.
    await feedback.call_unanswered(calls[0].step_id or 0, "no-answer")
    await EscalationScheduler(db, notifier, cfg, clock).tick()
    assert notifier.phones()[-1] == town.phones["grid_worker"]
    with pytest.raises(NotFound):
        await feedback.call_unanswered(999_999, "busy")
    # One fallback call was added as its own step of the same seq; the rest of the policy is untouched.
    async with db.session() as session:
        steps = [(s.seq, s.role, s.channel, s.state) for s in await list_steps(session, out.case_id or 0)]
    assert steps == [
        (0, "building_leader", "sms", "done"),
        (0, "building_leader", "voice", "done"),
        (1, "grid_worker", "sms", "done"),
        (2, "grid_worker", "voice", "planned"),
        (3, "community_duty", "voice", "planned"),
        (4, "street_command", "voice", "planned"),
    ]
    assert [(n.phone, n.channel) for n in notifier.sent.values()] == [
        (town.phones["building_leader"], "sms"),
        (town.phones["building_leader"], "voice"),
        (town.phones["grid_worker"], "sms"),
    ]


async def test_most_specific_policy_wins_and_bad_policies_are_refused(db: Database) -> None:
    town, clock, _, _, _ = await _setup(db)
    async with db.session() as session:
        steps = [{"role": "grid_worker", "channel": "voice", "wait_s": 60}]
        await save_policy(
            session,
            {"name": "street", "place": "T-D-S", "steps": steps},
            actor="t",
            channel="api",
            now=clock(),
        )
        b = [{"role": "building_leader", "channel": "sms", "wait_s": 30}]
        await save_policy(
            session,
            {"name": "bldg-fire", "place": "T-D-S-C-G-B", "category": "fire", "steps": b},
            actor="t",
            channel="api",
            now=clock(),
        )
        path = town.paths["U1"]
        assert (await policy_for(session, path, "fire", urgent=True))[0].role == "building_leader"
        assert (await policy_for(session, path, "fall", urgent=True))[0].role == "grid_worker"
        bad = [
            ({"name": "x", "place": "NOPE", "steps": steps}, "place"),
            ({"name": "x", "steps": [{"role": "grid_worker", "wait_s": 0}]}, "steps.0.wait_s"),
            ({"name": "x", "steps": [{"role": "grid_worker", "wait_s": -5}]}, "steps.0.wait_s"),
            ({"name": "x", "steps": [{"role": "mayor", "wait_s": 5}]}, "steps.0.role"),
            ({"name": "x", "steps": []}, "steps"),
            ({"name": "x", "category": "weather", "steps": steps}, "category"),
        ]
        for body, field in bad:
            with pytest.raises(InvalidInput) as err:
                await save_policy(session, body, actor="t", channel="api", now=clock())
            assert err.value.field == field, body
