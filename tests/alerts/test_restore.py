"""A restart (or an HA takeover) neither repeats nor misses a "no activity" alarm: timers re-armed from stored state."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import func, select

from alerts.alert import make_alert
from alerts.restore import AlreadyRecorded
from drivers import DRIVERS
from hub.app import Hub, build_hub, create_app
from hub.config import Settings
from hub.db.cases import Case, CaseAlert, CaseEvent
from hub.db.outbox import OutboxMessage
from tests.alerts.test_cases_kit import SHANGHAI, Clock, make_town
from tests.fleet import enroll

T0 = dt.datetime(2026, 11, 28, 9, 0, tzinfo=SHANGHAI)
SPAN = dt.timedelta(hours=10)  # a smoke sensor's heartbeat (4 h) × 2.5


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    """Poll an async ``check`` until it is true; fail naming ``what``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def uplink(hub: Hub, serial: str, seq: int) -> None:
    """One heartbeat of a smoke sensor through the hub's pipeline."""
    device = hub.ingest.directory.get(serial)
    assert device is not None
    hub.ingest.pipeline.accept(device, DRIVERS["smoke"].encode({"seq": seq, "smoke": 0.0}), "mqtt")


async def silent_cases(hub: Hub) -> dict[str, tuple[int, str, int]]:
    """Serial → (case id, state, alert count) of every inactivity case."""
    async with hub.db.session() as session:
        rows = (
            await session.execute(
                select(CaseAlert.labels, Case.id, Case.state, Case.alert_count)
                .join(Case, Case.id == CaseAlert.case_id)
                .where(CaseAlert.name == "silent")
            )
        ).all()
    return {row.labels["device"]: (row.id, row.state, row.alert_count) for row in rows}


async def rows_of(hub: Hub, case_id: int) -> tuple[int, int]:
    """(timeline lines, outbox messages) of a case."""
    async with hub.db.session() as session:
        events = await session.scalar(select(func.count()).where(CaseEvent.case_id == case_id))
        messages = await session.scalar(select(func.count()).where(OutboxMessage.case_id == case_id))
    return int(events or 0), int(messages or 0)


async def test_a_restart_neither_repeats_nor_misses_a_silence_alarm(
    database_url: str, tmp_path: Path
) -> None:
    """SD-1 went silent and its case was closed while it stays silent; SD-2's deadline passes while the hub is down."""
    settings = Settings(
        database={"url": database_url}, mqtt={"port": 0}, coap={"enabled": False}, var_dir=tmp_path
    )
    clock = Clock(T0)
    hub = build_hub(settings, clock)
    app = create_app(settings, hub)
    async with app.router.lifespan_context(app):
        town = await make_town(hub.db)
        for serial in ("SD-1", "SD-2"):
            await enroll(hub.db, serial, "smoke", town.street.households[0])
        await hub.ingest.directory.load_all()
        await hub.evaluator.refresh_places()
        uplink(hub, "SD-1", 1)
        uplink(hub, "SD-2", 1)
        clock.advance(hours=5)
        uplink(hub, "SD-2", 2)  # its deadline: T0 + 15 h
        clock.advance(hours=6)  # T0 + 11 h: SD-1 is past its deadline (T0 + 10 h)

        async def first_case() -> bool:
            return "SD-1" in await silent_cases(hub)

        await until(first_case, "SD-1's inactivity case")
        case_id = (await silent_cases(hub))["SD-1"][0]
        for action in ("accept", "resolve", "close"):  # a responder checked; the sensor stays silent
            await hub.cases.desk.act(case_id, action, actor="test", channel="cli", note="checked on site")
        before = await rows_of(hub, case_id)
    # The hub is down for five hours; SD-2's deadline passes meanwhile.
    clock.advance(hours=5)
    hub = build_hub(settings, clock)
    app = create_app(settings, hub)
    async with app.router.lifespan_context(app):

        async def second_case() -> bool:
            return "SD-2" in await silent_cases(hub)

        await until(second_case, "SD-2's inactivity case, due while the hub was down")
        await until(lambda: asyncio.sleep(0, hub.evaluator.engine.deadman.ticks >= 2), "two ticks")
        await hub.cases.drain()
        cases = await silent_cases(hub)
        assert cases["SD-1"][1:] == ("closed", 1), "the closed case was reopened by the same silence"
        assert await rows_of(hub, case_id) == before, "the same alarm went to the closed case again"
        assert hub.evaluator.restore.held == 1
        assert cases["SD-2"][1] == "discovered"
        # The held-back alarm still counts as firing: SD-1's next uplink ends it as usual.
        assert ("silent", hub.ingest.directory.get("SD-1").id) in hub.evaluator.engine.conditions.firing  # type: ignore[union-attr]


def test_only_the_same_alarm_is_held_back() -> None:
    """A later silence of the same device (a newer start) passes, and each recorded alarm is held once."""
    sent: list[float] = []
    gate = AlreadyRecorded(lambda alert: sent.append(alert.started_at))
    alert = make_alert(
        name="silent", rule_type="inactivity", severity="major", category="fault", started_at=100.0
    )
    gate.recorded = {alert.fingerprint: 150.0}
    gate(alert)
    gate(alert)
    later = make_alert(
        name="silent", rule_type="inactivity", severity="major", category="fault", started_at=200.0
    )
    gate.recorded = {later.fingerprint: 150.0}
    gate(later)
    gate(alert.resolved(300.0))
    assert sent == [100.0, 200.0, 100.0] and gate.held == 1
