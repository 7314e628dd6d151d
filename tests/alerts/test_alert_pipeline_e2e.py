"""End to end: a panic reading through the ingest pipeline → the engine → an urgent case with its steps due."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import select

from alerts.casestore import CaseFilter, list_cases
from alerts.escalation import list_steps
from drivers import DRIVERS
from hub.app import Hub, build_hub, create_app
from hub.config import Settings
from hub.db.cases import EscalationStep
from hub.db.outbox import OutboxMessage
from tests.alerts.test_cases_kit import SHANGHAI, Clock, make_town
from tests.fleet import enroll

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)


async def test_panic_press_opens_an_urgent_case(database_url: str, tmp_path: Path) -> None:
    settings = Settings(
        database={"url": database_url}, mqtt={"port": 0}, coap={"enabled": False}, var_dir=tmp_path
    )
    clock = Clock(T0)
    hub = build_hub(settings, clock)
    app = create_app(settings, hub)
    async with app.router.lifespan_context(app):
        town = await make_town(hub.db)
        await enroll(hub.db, "PB-1", "panic_button", town.street.households[0])
        await hub.ingest.directory.load_all()
        await hub.evaluator.refresh_places()
        device = hub.ingest.directory.get("PB-1")
        assert device is not None
        payload = DRIVERS["panic_button"].encode({"seq": 1, "events": ["pressed_single"]})
        # Through the hub's own wiring: pipeline hook → engine → alert queue → case service → outbox.
        hub.ingest.pipeline.accept(device, payload, "mqtt")
        steps = await _first_step_done(hub)
        async with hub.db.session() as session:
            cases = await list_cases(session, CaseFilter())
            phones = (await session.scalars(select(OutboxMessage.phone))).all()
            facts = (await session.scalars(select(OutboxMessage.facts))).all()
        assert [(c.category, c.urgency, c.state) for c in cases] == [("panic", "urgent", "discovered")]
        assert steps[0].state == "done" and steps[1].state == "planned"
        assert steps[1].due_at == T0 + dt.timedelta(seconds=steps[0].wait_s)
        assert phones == [town.phones["building_leader"]]
        # The message says where, from the community down to the household (not just "room 101").
        assert len(facts[0]["place"]) == 4


async def _first_step_done(hub: Hub) -> list[EscalationStep]:
    """Wait (bounded) until the case exists and its first escalation step has been sent to the outbox."""
    for _ in range(300):
        async with hub.db.session() as session:
            cases = await list_cases(session, CaseFilter())
            steps = await list_steps(session, cases[0].id) if cases else []
        if steps and steps[0].state == "done":
            return list(steps)
        await asyncio.sleep(0.02)
    raise AssertionError("the panic press did not become a case with its first step done")
