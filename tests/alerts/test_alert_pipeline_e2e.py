"""End to end: a panic reading through the ingest pipeline → the engine → an urgent case with its steps due."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alerts.alert import AlertQueue
from alerts.casestore import CaseFilter, list_cases
from alerts.engine import RuleEngine
from alerts.escalation import list_steps
from alerts.ruleset import RuleSet
from alerts.service import CaseService
from drivers import DRIVERS
from hub.app import build_hub, create_app
from hub.config import Settings
from tests.alerts.test_cases_kit import SHANGHAI, Clock, RecordingNotifier, config, make_town
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
        # The wiring the lead does in hub/app.py: queue → engine hook → case service.
        queue, notifier = AlertQueue(), RecordingNotifier()
        engine = RuleEngine(
            RuleSet.build(DRIVERS),
            queue,
            places={v: town.paths[k] for k, v in town.ids.items()},
            devices=hub.ingest.directory.by_id,
        )
        hub.ingest.pipeline.hooks.append(engine)
        service = CaseService(
            hub.db,
            queue,
            notifier,
            config(),
            clock,
            drivers=DRIVERS,
            swap_rules=lambda rules: engine.swap(rules, clock().timestamp()),
        )
        device = hub.ingest.directory.get("PB-1")
        assert device is not None
        payload = DRIVERS["panic_button"].encode({"seq": 1, "events": ["pressed_single"]})
        hub.ingest.pipeline.accept(device, payload, "mqtt")
        assert await service.drain() >= 1
        async with hub.db.session() as session:
            cases = await list_cases(session, CaseFilter())
            assert [(c.category, c.urgency, c.state) for c in cases] == [("panic", "urgent", "discovered")]
            steps = await list_steps(session, cases[0].id)
        assert steps[0].state == "done" and steps[1].state == "planned"
        assert steps[1].due_at == T0 + dt.timedelta(seconds=steps[0].wait_s)
        assert notifier.phones() == [town.phones["building_leader"]]
