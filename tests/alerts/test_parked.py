"""An alert or a message that keeps failing is retried with a bound, then parked where an operator sees it
(/api/v1/parked, /metrics, /readyz) and can retry it; the other alerts and messages go on meanwhile.

Faults come from the real database (a trigger that refuses one device's case) and from a real outbox row that no
template can render (a kind this hub does not know, as a newer version would write during an upgrade).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, text, update

from alerts.contracts import Notification
from drivers.base import Reading
from hub.app import Hub, build_hub, create_app
from hub.db import Database
from hub.db.cases import CaseAlert
from hub.db.outbox import OutboxMessage
from provisioning.apikeys import create_key
from tests.clocks import ManualClock
from tests.fleet import build_street, enroll, hub_settings

T0 = dt.datetime(2026, 12, 3, 2, 0, tzinfo=dt.UTC)
REFUSED = "cases of this device are refused (test trigger)"


async def until(check: Callable[[], Awaitable[Any]], what: str, tries: int = 400) -> Any:
    """Poll (bounded: 400 × 50 ms) until ``check`` returns something truthy."""
    for _ in range(tries):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def running(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Hub, httpx.AsyncClient, dict[str, str]]]:
    settings = hub_settings(
        database_url,
        tmp_path,
        alerts={"retry_attempts": 3, "retry_initial_s": 0.05, "retry_max_s": 0.2},
        twilio={
            "policy": {
                "max_attempts": 2,
                "backoff_base_s": 0.05,
                "backoff_max_s": 0.1,
                "poll_interval_s": 0.1,
            }
        },
    )
    hub = build_hub(settings, ManualClock(T0))
    app = create_app(settings, hub)
    async with app.router.lifespan_context(app):
        async with hub.db.session() as session:
            _, key = await create_key(
                session, name="ops", role="operator", places=[], actor="t", channel="system"
            )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield hub, client, {"Authorization": f"Bearer {key}"}


async def refuse_cases_of(hub: Hub, device_id: int, *, on: bool = True) -> None:
    """A database trigger that refuses to store a case of one device (a real database error, for one alert)."""
    async with hub.db.session() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        if not on:
            await session.execute(
                text("DROP TRIGGER refuse_case ON cases" if postgres else "DROP TRIGGER refuse_case")
            )
            return
        if postgres:
            await session.execute(
                text(
                    "CREATE FUNCTION refuse_case() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.device_id = {device_id} THEN RAISE EXCEPTION '{REFUSED}'; END IF; RETURN NEW; END "
                    "$$ LANGUAGE plpgsql"
                )
            )
            await session.execute(
                text(
                    "CREATE TRIGGER refuse_case BEFORE INSERT ON cases FOR EACH ROW EXECUTE FUNCTION refuse_case()"
                )
            )
        else:
            await session.execute(
                text(
                    f"CREATE TRIGGER refuse_case BEFORE INSERT ON cases WHEN NEW.device_id = {device_id} "
                    f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
                )
            )


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_an_alert_the_database_refuses_is_retried_then_parked_and_retried_by_an_operator(
    database_url: str, tmp_path: Path
) -> None:
    async with running(database_url, tmp_path) as (hub, client, headers):
        # Two smoke detectors in two buildings, so their alarms are two cases whatever the correlation.
        homes = [(await build_street(hub.db, prefix=p)).households[0] for p in ("T", "U")]
        a, b = [
            await enroll(hub.db, f"SMOKE-{n}", "smoke", h, events=hub.credential_events)
            for n, h in zip("AB", homes, strict=True)
        ]
        entries = await until(
            lambda: (
                asyncio.sleep(0, [hub.ingest.directory.by_id(d.device.id) for d in (a, b)])
                if all(hub.ingest.directory.by_id(d.device.id) for d in (a, b))
                else asyncio.sleep(0, None)
            ),
            "the detectors in the directory",
        )
        await refuse_cases_of(hub, a.device.id)
        alarm = Reading("smoke", None, None, {}, ("alarm",), True, False)
        now = T0.timestamp()
        for entry in entries:
            hub.evaluator.engine.on_reading(entry, alarm, now)

        async def alerted(device_id: int) -> bool:
            async with hub.db.session() as session:
                found = await session.scalar(
                    select(CaseAlert.case_id).where(CaseAlert.device_id == device_id)
                )
            return found is not None

        # B's alarm is a case at once, while A's is being retried beside it.
        await until(lambda: alerted(b.device.id), "the case of detector B")
        listed = await until(
            lambda: _json(client.get("/api/v1/parked", headers=headers)), "A's alarm to be parked"
        )
        [item] = listed
        assert (item["kind"], item["state"], item["attempts"]) == ("alert", "parked", 3)
        assert REFUSED in item["error"] and "SMOKE-A" in item["summary"] and item["id"] is not None
        assert not await alerted(a.device.id)
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and any("1 alert" in w for w in ready.json()["warnings"])
        metrics = (await client.get("/metrics")).text
        assert _sample(metrics, 'iothub_parked_total{kind="alert"}') == 1.0
        assert _sample(metrics, 'iothub_parked_waiting{kind="alert"}') == 1.0

        # A retry while the database still refuses: still parked, with one more attempt.
        again = (await client.post(f"/api/v1/parked/{item['id']}/retry", headers=headers)).json()
        assert (again["state"], again["attempts"]) == ("parked", 4) and REFUSED in again["error"]
        await refuse_cases_of(hub, a.device.id, on=False)
        done = await client.post(f"/api/v1/parked/{item['id']}/retry", headers=headers)
        assert done.status_code == 200 and done.json()["state"] == "done"
        assert await alerted(a.device.id)
        assert not [w for w in (await client.get("/readyz")).json()["warnings"] if "parked" in w]
        assert (await client.get("/api/v1/parked", headers=headers)).json() == []
        assert [i["id"] for i in (await client.get("/api/v1/parked?state=done", headers=headers)).json()] == [
            item["id"]
        ]
        # Settled is settled; an unknown id is a 404; the list is for operators.
        assert (await client.post(f"/api/v1/parked/{item['id']}/retry", headers=headers)).status_code == 409
        assert (await client.post("/api/v1/parked/999999/retry", headers=headers)).status_code == 404
        assert (await client.get("/api/v1/parked")).status_code == 401
        assert (await client.get("/api/v1/parked?kind=nonsense", headers=headers)).status_code == 422


async def test_a_message_no_template_can_render_is_parked_and_the_others_go_out(
    database_url: str, tmp_path: Path
) -> None:
    async with running(database_url, tmp_path) as (hub, client, headers):
        due = T0
        good = Notification.caseless_sms(
            "good-1", "budget_warning", None, "+8613900000001", "en", due, {"pct": 80}
        )
        poison = Notification.caseless_sms("poison-1", "case_update", None, "+8613900000002", "en", due, {})  # type: ignore[arg-type]
        async with hub.db.session() as session:
            assert await hub.outbox.enqueue(session, [poison, good]) == 2

        async def status(key: str) -> OutboxMessage:
            async with hub.db.session() as session:
                row = await session.scalar(select(OutboxMessage).where(OutboxMessage.idempotency_key == key))
            assert row is not None
            return row

        async def settled(key: str, wanted: str) -> OutboxMessage | None:
            row = await status(key)
            return row if row.status == wanted else None

        # The good message goes out although it was claimed with a row that breaks the grouping.
        await until(lambda: _in_flight(status("good-1")), "the good message to be sent")
        # The poison row: tried max_attempts (2) times with jittered waits (the clock moves past them), then parked.
        for _ in range(100):
            hub.outbox.clock.now += dt.timedelta(seconds=1)  # type: ignore[attr-defined]
            hub.outbox.wake()
            if (await status("poison-1")).status == "parked":
                break
            await asyncio.sleep(0.05)
        row = await settled("poison-1", "parked")
        assert row is not None and row.attempts == 2 and "KeyError" in (row.reason or "")
        [item] = (await client.get("/api/v1/parked?kind=message", headers=headers)).json()
        assert item["ref"] == str(row.id) and item["attempts"] == 2
        assert _sample((await client.get("/metrics")).text, 'iothub_parked_total{kind="message"}') == 1.0
        # An operator's retry makes the row pending with fresh attempts (it fails again here: parked again later).
        again = await client.post(f"/api/v1/parked/{item['id']}/retry", headers=headers)
        assert again.status_code == 200 and again.json()["state"] == "done"
        retried = await status("poison-1")
        assert retried.status in ("pending", "parked") and retried.attempts <= 2


async def _json(response: Awaitable[httpx.Response]) -> Any:
    return (await response).json()


async def _in_flight(row: Awaitable[OutboxMessage]) -> bool:
    return (await row).status not in ("pending", "sending")


async def test_feedback_the_escalation_cannot_take_is_parked_not_retried_forever(
    database_url: str, tmp_path: Path
) -> None:
    async with running(database_url, tmp_path) as (hub, client, headers):
        lost = Notification(
            "lost-step", "case_alert", "sms", None, "+8613900000003", "en", None, "C-X", 999_999, T0, {}
        )
        async with hub.db.session() as session:
            await hub.outbox.enqueue(session, [lost])
            # Twilio reported the SMS failed; its escalation step is gone (a step that no longer exists).
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.idempotency_key == "lost-step")
                .values(status="failed", feedback="due", reason="30003 unreachable")
            )
        hub.outbox.report_soon()
        listed = await until(
            lambda: _json(client.get("/api/v1/parked?kind=feedback", headers=headers)),
            "the feedback to be parked",
        )
        [item] = listed
        assert item["attempts"] == 2 and "no escalation step 999999" in item["error"]
        async with hub.db.session() as session:
            row = await session.scalar(
                select(OutboxMessage).where(OutboxMessage.idempotency_key == "lost-step")
            )
        assert row is not None and row.feedback == "parked"
        # The operator's retry owes it again (and, the step still missing, it is parked again after two tries).
        again = await client.post(f"/api/v1/parked/{item['id']}/retry", headers=headers)
        assert again.status_code == 200 and again.json()["state"] == "done"
        await until(
            lambda: _json(client.get("/api/v1/parked?kind=feedback", headers=headers)),
            "the feedback parked again",
        )


async def test_escalation_ticks_that_keep_failing_turn_the_cases_component_degraded(db: Database) -> None:
    from alerts.alert import AlertQueue
    from alerts.service import CaseService
    from tests.alerts.test_cases_kit import RecordingNotifier, config

    service = CaseService(db, AlertQueue(), RecordingNotifier(), config(), ManualClock(T0), interval=0.01)
    async with db.session() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
    # The scheduler's statements fail while its table is away (a real database error at every tick).
    rename = "ALTER TABLE escalation_steps RENAME TO {}"
    async with db.session() as session:
        await session.execute(text(rename.format("escalation_steps_away")))
    await service.start()
    try:
        ok, detail = await until(lambda: _degraded(service), "the cases component to turn degraded")
        assert not ok and detail.startswith("DEGRADED: ") and "escalation ticks failed" in detail
        assert ("does not exist" in detail) if postgres else ("no such table" in detail)
        async with db.session() as session:
            await session.execute(text("ALTER TABLE escalation_steps_away RENAME TO escalation_steps"))
        ok, _ = await until(lambda: _healthy(service), "the cases component to recover")
    finally:
        await service.stop()


async def _degraded(service: Any) -> tuple[bool, str] | None:
    ok, detail = await service.health()
    return (ok, detail) if not ok else None


async def _healthy(service: Any) -> tuple[bool, str] | None:
    ok, detail = await service.health()
    return (ok, detail) if ok else None
