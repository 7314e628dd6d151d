"""Through MQTT, the hub and Twilio (Prism): neighbours pressing at once are two cases, both called, in words."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.db.cases import Case
from tests.notify.test_loop import Loop, loop_rig
from tests.servers.prism import PrismServer


@pytest.fixture
async def loop(database_url: str, tmp_path: Path, prism: PrismServer) -> AsyncIterator[Loop]:
    """The running loop rig (building leader by SMS, then the English grid worker by call)."""
    async for rig in loop_rig(database_url, tmp_path, prism):
        yield rig


async def _cases(loop: Loop, category: str, n: int) -> list[Case]:
    """Wait (bounded) for ``n`` cases of ``category``; then a moment more, so that a third would show."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        async with loop.hub.db.session() as session:
            found = list((await session.scalars(select(Case).where(Case.category == category))).all())
        if len(found) >= n:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(found)} {category} cases, not {n}")


async def _alerts_merged(loop: Loop, case_id: int, count: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        async with loop.hub.db.session() as session:
            seen = await session.scalar(select(Case.alert_count).where(Case.id == case_id))
        if seen == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"case {case_id} holds {seen} alerts, not {count}")


async def test_neighbours_pressing_at_once_are_two_cases_both_called_in_words(loop: Loop) -> None:
    leader, worker = loop.town.phones["building_leader"], loop.town.phones["grid_worker"]
    await loop.device("PB-1", "panic_button", "U1")
    await loop.device("PB-2", "panic_button", "U2")
    # Two households of one building press at the same moment.
    await asyncio.gather(loop.press("PB-1", "pressed_long"), loop.press("PB-2", "pressed_long"))
    cases = await _cases(loop, "panic", 2)
    assert len(cases) == 2 and {c.household_id for c in cases} == {loop.town.ids["U1"], loop.town.ids["U2"]}
    for case in cases:
        sms = await loop.sent(
            lambda r, c=case: r.case_id == c.id and r.channel == "sms", f"SMS of {case.code}"
        )
        assert sms.phone == leader
    rows = [r for r in await loop.rows() if r.kind == "case_alert"]
    assert sorted(r.case_id for r in rows) == sorted(c.id for c in cases)
    # Whether Twilio got one SMS each or one naming both, the leader reads both cases, in words.
    bodies = "\n".join(r.body or "" for r in rows)
    assert all(c.code in bodies for c in cases) and "panic-long" not in bodies
    assert all(c.summary == "紧急按钮长按求助" for c in cases)

    # A second press from the same household is a repeat on its own case: no new message.
    await loop.press("PB-1", "pressed_long", seq=2)
    first = next(c for c in cases if c.household_id == loop.town.ids["U1"])
    await _alerts_merged(loop, first.id, 2)
    assert len([r for r in await loop.rows() if r.kind == "case_alert"]) == 2

    # Nobody accepts: the English grid worker is called for each, and hears what happened, never a rule id.
    loop.clock.advance(seconds=120)
    for case in cases:
        call = await loop.sent(
            lambda r, c=case: r.case_id == c.id and r.channel == "voice", f"call of {case.code}"
        )
        assert call.phone == worker
        assert "Panic button held" in (call.body or "") and "panic-long" not in (call.body or "")


async def test_three_smoke_alarms_of_one_building_are_one_fire(loop: Loop) -> None:
    for serial, home in (("SMK-1", "U1"), ("SMK-2", "U2"), ("SMK-3", "U2")):
        await loop.device(serial, "smoke", home)
    await asyncio.gather(*(loop.press(s, "alarm") for s in ("SMK-1", "SMK-2", "SMK-3")))
    (fire,) = await _cases(loop, "fire", 1)
    await _alerts_merged(loop, fire.id, 3)
    async with loop.hub.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == 1
    sms = await loop.sent(lambda r: r.case_id == fire.id and r.channel == "sms", "SMS of the fire")
    assert "烟感报警" in (sms.body or "") and "smoke-alarm" not in (sms.body or "")
