"""A rig for the alert path with the real rule engine: devices enrolled in the test town, alerts to cases."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from alerts.alert import Alert
from alerts.engine import RuleEngine
from alerts.pipeline import AlertPipeline, Outcome
from alerts.rules import parse_rules
from alerts.ruleset import RuleSet
from alerts.scheduler import EscalationScheduler
from drivers import DRIVERS
from drivers.base import Reading, Value
from hub.db import Database
from hub.ingest.directory import DeviceEntry
from tests.alerts.test_cases_kit import SHANGHAI, Clock, RecordingNotifier, Town, config, make_town
from tests.fleet import enroll

__all__ = ["T0", "Rig", "engine_rig"]

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)


@dataclass
class Rig:
    """The test town, its devices as ingest sees them, the real rule engine and the alert path."""

    db: Database
    town: Town
    clock: Clock
    notifier: RecordingNotifier
    pipe: AlertPipeline
    engine: RuleEngine
    alerts: list[Alert]
    devices: dict[str, DeviceEntry]

    async def device(self, serial: str, kind: str, household: str = "U1") -> None:
        """Enroll a device in household U1 or U2 (both in the town's one building)."""
        code = self.town.street.households[0 if household == "U1" else 1]
        made = await enroll(self.db, serial, kind, code)
        device = made.device
        self.devices[serial] = DeviceEntry(
            device.id,
            serial,
            kind,
            DRIVERS[kind],
            device.place_id,
            None,
            "active",
            "mqtt",
            None,
            False,
            1,
            None,
        )
        self.engine.set_places({self.town.ids[h]: self.town.paths[h] for h in ("U1", "U2")})

    async def event(self, serial: str, event: str) -> Outcome:
        """One uplink with ``event`` through the engine, then its alert through the case path."""
        return await self.uplink(serial, (event,))

    async def uplink(self, serial: str, events: tuple[str, ...] = (), **metrics: Value) -> Outcome:
        """One uplink through the engine; the one alert it fires goes through the case path."""
        device = self.devices[serial]
        self.alerts.clear()
        reading = Reading(device.kind, None, None, dict(metrics), events, False, not events)
        self.engine.on_reading(device, reading, self.clock().timestamp())
        return await self._one(f"{events or metrics} of {serial}")

    async def silence(self, serial: str) -> Outcome:
        """A heartbeat, then nothing until past the device's deadman span: its inactivity alert."""
        device = self.devices[serial]
        now = self.clock().timestamp()
        self.engine.on_reading(device, Reading(device.kind, None, None, {}, (), False, True), now)
        self.alerts.clear()
        self.engine.tick(now + 7 * 86_400)
        return await self._one(f"silence of {serial}")

    async def _one(self, what: str) -> Outcome:
        firing = [a for a in self.alerts if a.firing]
        assert len(firing) == 1, f"{what} gave {self.alerts}"
        return await self.pipe.handle(firing[0])


async def engine_rig(db: Database, *rules: dict[str, object]) -> Rig:
    """The town, a case path with a recording notifier, and an engine over the drivers' defaults and ``rules``."""
    town = await make_town(db)
    clock, notifier, cfg = Clock(T0), RecordingNotifier(), config()
    pipe = AlertPipeline(db, cfg, clock, EscalationScheduler(db, notifier, cfg, clock))
    out: list[Alert] = []
    engine = RuleEngine(RuleSet.build(DRIVERS, parse_rules(list(rules))), out.append)
    return Rig(db, town, clock, notifier, pipe, engine, out, {})
