"""The whole loop through a hub built by build_hub: MQTT press → case → Twilio (Prism) → signed answers → case."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from alerts.desk import Intake
from alerts.escalation import list_steps, save_policy
from drivers import DRIVERS
from hub.app import Hub, build_hub, create_app
from hub.db.cases import Case
from hub.db.outbox import OutboxMessage
from provisioning.places import update_place
from provisioning.responders import update_responder
from tests.alerts.test_cases_kit import SHANGHAI, Clock, Town, make_town
from tests.fleet import enroll
from tests.ingest.test_mqtt_kit import Device
from tests.notify.conftest import AUTH_TOKEN, PUBLIC, make_settings, requests_sent
from tests.servers.prism import PrismServer

__all__ = ["T0", "Loop", "loop_rig"]

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=SHANGHAI)  # a Monday morning
WHO = {"actor": "test", "channel": "cli"}
# Building leader by SMS, then the grid worker by call, then the community's duty officer by call.
POLICY = {
    "name": "loop",
    "steps": [
        {"role": "building_leader", "channel": "sms", "wait_s": 120},
        {"role": "grid_worker", "channel": "voice", "wait_s": 180},
        {"role": "community_duty", "channel": "voice", "wait_s": 300},
    ],
}


@dataclass
class Loop:
    """A started hub (Twilio at Prism, injected clock), the test town, paho devices and a signing client."""

    hub: Hub
    http: httpx.AsyncClient
    clock: Clock
    town: Town
    port: int
    devices: dict[str, Device] = field(default_factory=dict)

    async def device(self, serial: str, kind: str, household: str = "U1") -> Device:
        """Enroll a device into a household of the town and connect it over MQTT."""
        code = self.town.street.households[0 if household == "U1" else 1]
        made = await enroll(self.hub.db, serial, kind, code, events=self.hub.credential_events)
        await self.hub.ingest.directory.refresh(made.device.id)
        device = Device(serial, self.port, made.secrets.mqtt_password)
        self.devices[serial] = device
        assert await device.connect(), f"{serial} could not connect"
        return device

    async def press(self, serial: str, *events: str, seq: int = 1) -> None:
        """Publish an uplink with ``events`` from an enrolled device (QoS 1, acknowledged)."""
        device = self.devices[serial]
        kind = self.hub.ingest.directory.get(serial)
        assert kind is not None
        await device.up(DRIVERS[kind.kind].encode({"seq": seq, "events": list(events)}))

    async def post(
        self, path: str, params: dict[str, str], *, signature: str | None = "sign"
    ) -> httpx.Response:
        """POST a form as Twilio would, signed for the public URL (or with ``signature`` as given)."""
        headers = {}
        if signature == "sign":
            signed = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + path, params)
            headers["X-Twilio-Signature"] = signed
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        return await self.http.post(path, data=params, headers=headers)

    async def sms(self, phone: str, body: str, **kw: Any) -> httpx.Response:
        """An inbound SMS from ``phone``."""
        params = {"From": phone, "To": "+15005550006", "Body": body, "MessageSid": "SMreply"}
        return await self.post("/twilio/sms", params, **kw)

    async def rows(self) -> list[OutboxMessage]:
        """Every outbox row, oldest first."""
        async with self.hub.db.session() as session:
            return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())

    async def sent(self, check: Callable[[OutboxMessage], bool], what: str) -> OutboxMessage:
        """Wait (bounded) for a row matching ``check`` that Twilio accepted (its SID stored)."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for row in await self.rows():
                if check(row) and row.twilio_sid and row.sent_at is not None:
                    return row
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"no {what} was sent; outbox: {[(r.kind, r.phone, r.status) for r in await self.rows()]}"
        )

    async def case(self, case_id: int | None = None, category: str | None = None) -> Case:
        """One case by id, or the newest of ``category``, waiting (bounded) for it to exist."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            async with self.hub.db.session() as session:
                query = select(Case).order_by(Case.id.desc())
                if case_id is not None:
                    query = query.where(Case.id == case_id)
                if category is not None:
                    query = query.where(Case.category == category)
                found = (await session.scalars(query.limit(1))).first()
            if found is not None:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"no case {case_id or category}")

    async def ticks(self, n: int = 2) -> None:
        """Wait (bounded) until the case service's ticker has run ``n`` more times at the current clock."""
        start = self.hub.cases.ticks
        deadline = time.monotonic() + 15
        while self.hub.cases.ticks < start + n:
            assert time.monotonic() < deadline, "the escalation ticker did not tick"
            await asyncio.sleep(0.02)


async def loop_rig(database_url: str, tmp_path: Path, prism: PrismServer) -> AsyncIterator[Loop]:
    """Start the hub as `iothub serve` builds it, with the town, the loop policy and an English grid worker."""
    settings = make_settings(database_url, tmp_path, prism.url)
    clock = Clock(T0)
    hub = build_hub(settings, clock)
    hub.cases.interval = 0.05  # the ticker's real-time period; due times still follow the injected clock
    app = create_app(settings, hub)
    async with app.router.lifespan_context(app):
        town = await make_town(hub.db)
        async with hub.db.session() as session:
            await save_policy(session, POLICY, now=clock(), **WHO)
            await update_responder(session, town.responders["grid_worker"], {"language": "en"}, **WHO)
        await hub.evaluator.refresh_places()
        port = int(hub.listening["mqtt"].rsplit(":", 1)[1])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            rig = Loop(hub, http, clock, town, port)
            try:
                yield rig
            finally:
                for device in rig.devices.values():
                    device.close()


@pytest.fixture
async def loop(database_url: str, tmp_path: Path, prism: PrismServer) -> AsyncIterator[Loop]:
    """The running loop rig."""
    async for rig in loop_rig(database_url, tmp_path, prism):
        yield rig


async def test_press_sms_reply_call_keypress_fallback_and_forgery(loop: Loop) -> None:
    town, phones = loop.town, loop.town.phones
    leader, worker = phones["building_leader"], phones["grid_worker"]
    await loop.device("PB-1", "panic_button", "U1")
    await loop.device("PB-2", "panic_button", "U2")
    await loop.device("SMK-1", "smoke", "U1")

    # 1. A long press: an urgent case, an SMS accepted by the Twilio API, answered "1" by the leader.
    await loop.press("PB-1", "pressed_long")
    first = await loop.case(category="panic")
    assert (first.urgency, first.state) == ("urgent", "discovered")
    sms = await loop.sent(lambda r: r.case_id == first.id and r.channel == "sms", "SMS of the panic case")
    assert sms.phone == leader and sms.status == "queued" and "紧急呼救" in (sms.body or "")
    # Forged webhooks are refused and change nothing.
    assert (await loop.sms(leader, "1", signature="forged=")).status_code == 403
    assert (
        await loop.post(f"/twilio/status/{sms.id}", {"MessageStatus": "failed"}, signature=None)
    ).status_code == 403
    assert (await loop.case(first.id)).state == "discovered"
    assert [r.status for r in await loop.rows()] == ["queued"]
    answer = await loop.sms(leader, "1")
    assert answer.status_code == 200 and first.code in answer.text and "由您处理" in answer.text
    accepted = await loop.case(first.id)
    assert (accepted.state, accepted.accepted_responder_id) == (
        "accepted",
        town.responders["building_leader"],
    )
    async with loop.hub.db.session() as session:
        assert [s.state for s in await list_steps(session, first.id)] == ["done", "cancelled", "cancelled"]
    loop.clock.advance(seconds=200)  # past the next step's due time: escalation stopped, nobody is called
    await loop.ticks()
    assert requests_sent(loop.hub.outbox, "voice") == 0 and requests_sent(loop.hub.outbox, "sms") == 1

    # 2. A fall in the other household: nobody answers the SMS; the call comes; keypress 1 accepts.
    await loop.press("PB-2", "fall_detected")
    second = await loop.case(category="fall")
    await loop.sent(lambda r: r.case_id == second.id and r.channel == "sms", "SMS of the fall case")
    loop.clock.advance(seconds=120)
    call = await loop.sent(lambda r: r.case_id == second.id and r.channel == "voice", "call of the fall case")
    assert call.phone == worker and "This is the community emergency desk" in (call.body or "")
    press = await loop.post(
        f"/twilio/voice/{call.id}/gather", {"Digits": "1", "CallSid": call.twilio_sid or ""}
    )
    assert press.status_code == 200 and f"Confirmed: case {second.code} is yours." in press.text
    taken = await loop.case(second.id)
    assert (taken.state, taken.accepted_responder_id) == ("accepted", town.responders["grid_worker"])

    # 3. A smoke alarm whose SMS fails (signed status callback): the same person is called instead.
    await loop.press("SMK-1", "alarm")
    third = await loop.case(category="fire")
    failed = await loop.sent(lambda r: r.case_id == third.id and r.channel == "sms", "SMS of the fire case")
    callback = {"MessageStatus": "failed", "ErrorCode": "30003", "MessageSid": failed.twilio_sid or ""}
    assert (await loop.post(f"/twilio/status/{failed.id}", callback)).status_code == 204
    fallback = await loop.sent(lambda r: r.case_id == third.id and r.channel == "voice", "fallback call")
    assert fallback.phone == leader and "这里是社区应急平台" in (fallback.body or "")
    # What left for Twilio, counted on the hub side: one request per message, none twice.
    assert requests_sent(loop.hub.outbox, "sms") == 3 and requests_sent(loop.hub.outbox, "voice") == 2
    assert (await loop.case(third.id)).state == "discovered"


async def test_resolved_cases_ask_the_household_and_the_reporter_for_a_rating(loop: Loop) -> None:
    town, leader = loop.town, loop.town.phones["building_leader"]
    daughter = "+8613900000009"
    async with loop.hub.db.session() as session:
        contacts = [{"name": "女儿", "relation": "daughter", "phone": daughter}]
        await update_place(session, town.street.households[0], {"contacts": contacts}, **WHO)
    await loop.device("PB-1", "panic_button", "U1")
    await loop.press("PB-1", "pressed_long")
    case = await loop.case(category="panic")
    await loop.sent(lambda r: r.case_id == case.id and r.kind == "case_alert", "the case alert")
    assert "由您处理" in (await loop.sms(leader, "1")).text
    assert "已处理" in (await loop.sms(leader, "DONE 已送医")).text
    ask = await loop.sent(lambda r: r.kind == "rating_request", "the rating request")
    assert ask.phone == daughter and ask.case_id == case.id and "请回复1-5" in (ask.body or "")
    assert "感谢" in (await loop.sms(daughter, "5")).text
    rated = await loop.case(case.id)
    assert (rated.state, rated.rating) == ("closed", 5)

    # A citizen's report: the reporter (an English number) is asked once the case is resolved.
    reporter = "+447700900123"
    report = Intake(
        source="citizen",
        category="citizen_report",
        place=town.street.households[1],
        description="the stairwell light is out",
        reporter_phone=reporter,
    )
    desk = loop.hub.cases.desk
    made = await desk.intake(report, actor="test", channel="api")
    for action, note in (("accept", ""), ("resolve", "bulb replaced")):
        await desk.act(made.code, action, actor="ops", channel="api", note=note)
    ask = await loop.sent(
        lambda r: r.kind == "rating_request" and r.case_id == made.id, "the reporter's request"
    )
    assert ask.phone == reporter and "Please rate our service" in (ask.body or "")
    assert "Thank you" in (await loop.sms(reporter, "4")).text
    assert (await loop.case(made.id)).rating == 4
    assert len([r for r in await loop.rows() if r.kind == "rating_request"]) == 2  # one per resolution
