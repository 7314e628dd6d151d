"""A device enrolled while the hub runs and never heard from is itself a case once its silence outlasts the rule."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import select

from hub.app import build_hub
from hub.db.cases import Case
from tests.clocks import ManualClock
from tests.fleet import build_street, enroll, hub_settings

T0 = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)


async def test_a_silent_new_door_sensor_opens_a_fault_case(database_url: str, tmp_path: Path) -> None:
    settings = hub_settings(database_url, tmp_path)
    clock = ManualClock(T0)
    hub = build_hub(settings, clock)
    await hub.start()
    try:
        street = await build_street(hub.db)
        tracked_before = hub.evaluator.engine.deadman.stats()["tracked"]
        door = await enroll(hub.db, "QUIET-1", "door", street.households[0], events=hub.credential_events)
        for _ in range(250):  # the enrollment event arms the deadman in a task of the evaluator
            if hub.evaluator.engine.deadman.stats()["tracked"] == tracked_before + 1:
                break
            await asyncio.sleep(0.02)
        assert hub.evaluator.engine.deadman.stats()["tracked"] == tracked_before + 1
        # Silent for longer than 2.5 × the door's 1 h heartbeat: the next tick fires, a case opens.
        clock.now = T0 + dt.timedelta(hours=2, minutes=31)
        case = None
        for _ in range(250):
            async with hub.db.session() as session:
                case = (await session.scalars(select(Case).where(Case.device_id == door.device.id))).first()
            if case is not None:
                break
            await asyncio.sleep(0.02)
        assert case is not None, "no case for a device that never spoke"
        assert (case.category, case.urgency) == ("fault", "ordinary")
    finally:
        await hub.stop()
