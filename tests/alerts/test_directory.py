"""The alert path's in-memory places, responders and policies: a change reaches the very next case."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import insert

from alerts.alert import make_alert
from alerts.directory import Directory
from alerts.escalation import save_policy
from alerts.pipeline import AlertPipeline
from alerts.scheduler import EscalationScheduler
from hub.db import Database
from hub.db.people import Responder, responder_places
from provisioning.places import get_place, update_place
from provisioning.responders import ResponderData, create_responder, update_responder
from tests.alerts.test_cases_kit import SHANGHAI, Clock, RecordingNotifier, Town, config, fire, make_town

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)


async def _started(db: Database, **kwargs: float) -> tuple[Town, Directory, RecordingNotifier, AlertPipeline]:
    town = await make_town(db)
    directory = Directory(db, **kwargs)
    await directory.start()
    clock, notifier, cfg = Clock(T0), RecordingNotifier(), config()
    scheduler = EscalationScheduler(db, notifier, cfg, clock, directory=directory)
    return town, directory, notifier, AlertPipeline(db, cfg, clock, scheduler)


async def _until_fresh(directory: Directory, loads: int = 0) -> None:
    for _ in range(1000):  # the reload runs in the background
        if directory.fresh and directory.loads > loads:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the directory did not reload")


async def test_a_responder_change_reaches_the_next_case(db: Database) -> None:
    # A slow reload (settle_s) keeps the first case after the change on the database look-ups.
    town, directory, notifier, pipe = await _started(db, settle_s=1.0)
    try:
        assert directory.fresh
        leader = town.responders["building_leader"]
        async with db.session() as session:
            await update_responder(session, leader, {"active": False}, actor="test", channel="cli")
            data = ResponderData(
                name="new leader", phone="+8613900000099", role="building_leader", places=["T-D-S-C-G-B"]
            )
            await create_responder(session, data, actor="test", channel="cli")
        assert not directory.fresh  # dropped at the commit, before any reload
        await pipe.handle(fire(town))
        assert notifier.phones() == ["+8613900000099"]
        # Reloaded in the background; the next case (another alarm kind) is served from memory alike.
        await _until_fresh(directory, loads=1)
        panic = make_alert(
            name="panic_button",
            rule_type="event",
            severity="critical",
            category="panic",
            started_at=0.0,
            device_serial="PB-1",
            place_id=town.ids["U2"],
        )
        await pipe.handle(panic)
        assert notifier.phones() == ["+8613900000099", "+8613900000099"]
    finally:
        await directory.stop()


async def test_a_renamed_place_and_a_new_policy_reach_the_next_case(db: Database) -> None:
    town, directory, notifier, pipe = await _started(db)
    try:
        async with db.session() as session:
            await update_place(session, "T-D-S-C-G-B", {"name": "3号楼"}, actor="test", channel="cli")
            await save_policy(
                session,
                {
                    "name": "building",
                    "place": "T-D-S-C-G-B",
                    "steps": [{"role": "grid_worker", "wait_s": 60}],
                },
                actor="test",
                channel="cli",
                now=T0,
            )
        await _until_fresh(directory, loads=1)
        await pipe.handle(fire(town))
        [note] = notifier.sent.values()
        assert note.phone == town.phones["grid_worker"]  # the new policy's first step
        assert "3号楼" in note.facts["place"]
    finally:
        await directory.stop()


async def test_a_write_from_another_process_is_seen_by_the_probe(db: Database) -> None:
    town, directory, notifier, pipe = await _started(db, probe_s=0.02)
    try:
        # A raw connection, as another process (a CLI import) would write: no session event here.
        async with db.engine.begin() as conn:
            async with db.session() as session:
                building = await get_place(session, "T-D-S-C-G-B")
            now = dt.datetime.now(dt.UTC)
            row = {"name": "cli leader", "phone": "+8613900000077", "role": "building_leader"}
            result = await conn.execute(
                insert(Responder)
                .values(
                    **row, language="zh-CN", active=True, sms_opt_out=False, created_at=now, updated_at=now
                )
                .returning(Responder.id)
            )
            await conn.execute(
                insert(responder_places).values(responder_id=result.scalar_one(), place_id=building.id)
            )
        await _until_fresh(directory, loads=1)
        await pipe.handle(fire(town))
        assert sorted(notifier.phones()) == sorted([town.phones["building_leader"], "+8613900000077"])
    finally:
        await directory.stop()
