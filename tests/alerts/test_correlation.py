"""Correlation by building is declared data: shared hazards fold into one case, personal emergencies never do."""

from __future__ import annotations

from alerts.alert import make_alert
from alerts.caseflow import transition
from alerts.casestore import get_case
from alerts.dedup import DedupReason
from hub.db import Database
from tests.alerts.test_engine_kit import engine_rig


async def test_three_smoke_alarms_in_one_building_are_one_case(db: Database) -> None:
    rig = await engine_rig(db)
    for serial, home in (("SMK-1", "U1"), ("SMK-2", "U2"), ("SMK-3", "U2")):
        await rig.device(serial, "smoke", home)
    first = await rig.event("SMK-1", "alarm")
    rig.clock.advance(minutes=2)
    second = await rig.event("SMK-2", "alarm")
    rig.clock.advance(minutes=2)
    third = await rig.event("SMK-3", "alarm")
    assert [o.reason for o in (first, second, third)] == [
        DedupReason.NEW_CASE,
        DedupReason.CORRELATED,
        DedupReason.CORRELATED,
    ]
    assert first.case_id == second.case_id == third.case_id
    assert len(rig.notifier.sent) == 1  # one fire, one first SMS


async def test_panic_presses_of_two_households_in_one_building_are_two_cases(db: Database) -> None:
    rig = await engine_rig(db)
    await rig.device("PB-1", "panic_button", "U1")
    await rig.device("PB-2", "panic_button", "U2")
    one = await rig.event("PB-1", "pressed_long")
    two = await rig.event("PB-2", "pressed_long")  # the same instant, the same building
    assert (one.reason, two.reason) == (DedupReason.NEW_CASE, DedupReason.NEW_CASE)
    assert one.case_id != two.case_id
    assert one.notifications == 1 and two.notifications == 1
    first_sms = [n for n in rig.notifier.sent.values() if n.channel == "sms"]
    assert sorted(n.case_code or "" for n in first_sms) == sorted([one.case_code or "", two.case_code or ""])
    async with db.session() as session:
        homes = {(await get_case(session, o.case_id or 0)).household_id for o in (one, two)}
    assert homes == {rig.town.ids["U1"], rig.town.ids["U2"]}
    # A second press from the same household is a repeat on its own case: nobody is called twice.
    rig.clock.advance(minutes=1)
    again = await rig.event("PB-1", "pressed_long")
    assert (again.reason, again.case_id, again.notifications) == (DedupReason.REPEAT, one.case_id, 0)


async def test_a_fall_of_another_wearer_is_neither_a_repeat_nor_correlated(db: Database) -> None:
    rig = await engine_rig(db)
    await rig.device("PB-1", "panic_button", "U1")
    await rig.device("PB-2", "panic_button", "U2")
    await rig.device("CAM-1", "bodycam", "U1")
    await rig.device("CAM-2", "bodycam", "U1")
    falls = [await rig.event(serial, "fall_detected") for serial in ("PB-1", "PB-2")]
    falls += [await rig.event(serial, "fall") for serial in ("CAM-1", "CAM-2")]
    sos = [await rig.event(serial, "sos") for serial in ("CAM-1", "CAM-2")]
    assert [o.reason for o in falls + sos] == [DedupReason.NEW_CASE] * 6
    assert len({o.case_id for o in falls + sos}) == 6
    assert len(rig.notifier.sent) == 6


async def test_a_personal_emergency_reopens_within_a_day(db: Database) -> None:
    rig = await engine_rig(db)
    await rig.device("PB-1", "panic_button", "U1")
    first = await rig.event("PB-1", "pressed_long")
    cfg = rig.pipe.cfg
    async with db.session() as session:
        case = await get_case(session, first.case_id or 0)
        for action, note in (("accept", ""), ("resolve", "helped up"), ("close", "daughter informed")):
            await transition(
                session, case, action, actor="op", channel="api", now=rig.clock(), note=note, cfg=cfg
            )
    rig.clock.advance(hours=5)
    again = await rig.event("PB-1", "pressed_long")
    # The same person again: their own case comes back, and people are called again at once.
    assert (again.reason, again.case_id) == (DedupReason.REOPENED, first.case_id)
    assert again.notifications == 1
    # Meanwhile a neighbour's press is still a case of its own.
    await rig.device("PB-2", "panic_button", "U2")
    other = await rig.event("PB-2", "pressed_long")
    assert other.reason is DedupReason.NEW_CASE and other.case_id != first.case_id


async def test_correlation_is_the_rules_data_not_the_dedup_stages(db: Database) -> None:
    # An operator may declare a building-wide break-in pattern: forced doors of one building as one case.
    rig = await engine_rig(
        db,
        {
            "name": "door-forced",
            "type": "event",
            "kind": "door",
            "event": "forced",
            "severity": "critical",
            "category": "intrusion",
            "correlate": "building",
        },
    )
    await rig.device("DOOR-1", "door", "U1")
    await rig.device("DOOR-2", "door", "U2")
    one = await rig.event("DOOR-1", "forced")
    two = await rig.event("DOOR-2", "forced")
    assert (one.reason, two.reason) == (DedupReason.NEW_CASE, DedupReason.CORRELATED)
    assert one.case_id == two.case_id


async def test_inactivity_of_two_households_in_one_building_is_two_cases(db: Database) -> None:
    # A household rule's alert has no driver: its category ("activity", a person living alone) decides.
    rig = await engine_rig(db)
    outcomes = []
    for home in ("U1", "U2"):
        place = rig.town.ids[home]
        alert = make_alert(
            name="quiet-morning",
            rule_type="household",
            severity="major",
            category="activity",
            started_at=rig.clock().timestamp(),
            place_id=place,
            household=place,
        )
        outcomes.append(await rig.pipe.handle(alert))
    assert [o.reason for o in outcomes] == [DedupReason.NEW_CASE, DedupReason.NEW_CASE]
    assert outcomes[0].case_id != outcomes[1].case_id
