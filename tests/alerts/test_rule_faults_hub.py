"""A running hub whose rule fails for one device: the other devices' cases open on time, the failures are counted
in /metrics, the rule shows its last error in the API, and /readyz turns degraded while the ticks keep failing."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from alerts.ruleset import DeviceRules, RuleSet
from hub.app import build_hub, create_app
from hub.db.cases import CaseAlert
from provisioning.apikeys import create_key
from tests.alerts.test_rule_faults import Unraisable
from tests.clocks import ManualClock
from tests.fleet import build_street, enroll, hub_settings

T0 = dt.datetime(2026, 12, 3, 2, 0, tzinfo=dt.UTC)
QUIET = {"name": "silent", "type": "inactivity", "kind": "door", "interval_s": 600, "severity": "major"}


class OneDoorUnraisable(RuleSet):
    """The rules in force, except that ``silent`` cannot be raised for one door (its severity lookup fails)."""

    def __init__(self, rules: RuleSet, serial: str) -> None:
        super().__init__(rules.rules, rules.drivers)
        self.serial = serial

    def for_device(self, kind: str, path: str | None, serial: str | None) -> DeviceRules:
        rules = super().for_device(kind, path, serial)
        if serial != self.serial or rules.inactivity is None:
            return rules
        return replace(rules, inactivity=Unraisable(rules.inactivity))  # type: ignore[arg-type]


async def until(check: Callable[[], Awaitable[Any]], what: str, tries: int = 400) -> Any:
    """Poll (bounded: 400 × 50 ms) until ``check`` returns something truthy."""
    for _ in range(tries):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_one_failing_door_leaves_the_others_on_time_and_is_visible(
    database_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    settings = hub_settings(database_url, tmp_path)
    hub = build_hub(settings, clock)
    app = create_app(settings, hub)
    async with app.router.lifespan_context(app):
        street = await build_street(hub.db)
        doors = [
            await enroll(hub.db, f"DOOR-{n}", "door", street.households[0], events=hub.credential_events)
            for n in (1, 2, 3)
        ]
        ids = {d.device.serial: d.device.id for d in doors}
        engine = hub.evaluator.engine
        await until(lambda: asyncio.sleep(0, engine.deadman.stats()["tracked"] >= 3), "the doors to be armed")
        async with hub.db.session() as session:
            _, key = await create_key(session, name="a", role="admin", places=[], actor="t", channel="system")
        headers = {"Authorization": f"Bearer {key}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            made = await client.post("/api/v1/rules", json=QUIET, headers=headers)
            assert made.status_code == 201, made.text
            rule_id = made.json()["id"]
            engine.swap(OneDoorUnraisable(engine.rules, "DOOR-2"), T0.timestamp())
            before_jump = (await client.get("/metrics")).text

            clock.now = T0 + dt.timedelta(seconds=601)  # just past the 600 s of silence

            async def cases() -> dict[int, str]:
                # By the alerts joined to cases: one building's silent doors may share one case.
                async with hub.db.session() as session:
                    rows = (await session.execute(select(CaseAlert.device_id, CaseAlert.name))).all()
                return {device_id: name for device_id, name in rows}

            # Doors 1 and 3 raise their alarms (cases) from the first tick after the jump, door 2 fails at every tick.
            opened = await until(lambda: _has(cases, ids["DOOR-1"], ids["DOOR-3"]), "cases of doors 1 and 3")
            assert ids["DOOR-2"] not in opened
            ready = await until(lambda: _status(client, 503), "/readyz to turn degraded")
            detail = ready.json()["components"]["rules"]["detail"]
            assert detail.startswith("DEGRADED: ") and "silent for DOOR-2" in detail and "KeyError" in detail
            metrics = (await client.get("/metrics")).text
            counted = _sample(metrics, 'iothub_rules_evaluation_failures_total{rule="silent"}')
            assert counted >= 10
            # A failing tick is not a good tick: the last-tick time stays where the last good one left it.
            last_good = _sample(before_jump, "iothub_rules_last_tick_timestamp_seconds")
            assert _sample(metrics, "iothub_rules_last_tick_timestamp_seconds") == last_good
            assert _sample(metrics, "iothub_rules_failed_ticks_total") >= 10
            shown = (await client.get(f"/api/v1/rules/{rule_id}", headers=headers)).json()
            assert shown["evaluation"]["failures"] >= 10
            assert shown["evaluation"]["last_error"]["subject"] == "DOOR-2"
            assert "severity table" in shown["evaluation"]["last_error"]["error"]
            listed = (await client.get("/api/v1/rules/failures", headers=headers)).json()
            assert [r["rule"] for r in listed] == ["silent"]

            # Mended (the stored rules are put back in force): door 2's case opens, and /readyz recovers.
            assert hub.cases.reloader is not None
            await hub.cases.reloader.reload()
            await until(lambda: _has(cases, ids["DOOR-2"]), "the case of door 2")
            await until(lambda: _status(client, 200), "/readyz to be ready again")


async def _has(cases: Callable[[], Awaitable[dict[int, str]]], *device_ids: int) -> dict[int, str] | None:
    found = await cases()
    return found if all(d in found for d in device_ids) else None


async def _status(client: httpx.AsyncClient, status: int) -> httpx.Response | None:
    ready = await client.get("/readyz")
    return ready if ready.status_code == status else None


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")
