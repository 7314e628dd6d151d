"""Twilio webhooks through the hub's API, signed with RequestValidator, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from alerts.notifiers import build_outbox
from alerts.outbox import Outbox
from hub.app import create_app
from hub.db.base import AuditEvent
from hub.db.outbox import OutboxMessage
from hub.db.people import Responder
from tests.notify.conftest import (
    AUTH_TOKEN,
    PUBLIC,
    FakeClock,
    RecordingCaseActions,
    RecordingFeedback,
    Street,
    alert,
    make_settings,
    make_street,
    requests_sent,
)
from tests.servers.prism import PrismServer


@dataclass
class Rig:
    """The running app, its outbox and an HTTP client that can sign like Twilio."""

    http: httpx.AsyncClient
    outbox: Outbox
    street: Street
    clock: FakeClock

    async def post(
        self, path: str, params: dict[str, str], *, signature: str | None = "sign"
    ) -> httpx.Response:
        headers = {}
        if signature == "sign":
            headers["X-Twilio-Signature"] = RequestValidator(AUTH_TOKEN).compute_signature(
                PUBLIC + path, params
            )
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        return await self.http.post(path, data=params, headers=headers)

    async def sms(self, phone: str, body: str, **kw: Any) -> httpx.Response:
        return await self.post(
            "/twilio/sms", {"From": phone, "To": "+15005550006", "Body": body, "MessageSid": "SMin"}, **kw
        )

    async def send(self, *notes: Any) -> int:
        async with self.outbox.db.session() as s:
            await self.outbox.enqueue(s, list(notes))
        return await self.outbox.run_once()

    async def rows(self) -> list[OutboxMessage]:
        async with self.outbox.db.session() as s:
            return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


@pytest.fixture
async def rig(
    database_url: str,
    tmp_path: Path,
    prism: PrismServer,
    clock: FakeClock,
    actions: RecordingCaseActions,
    feedback: RecordingFeedback,
) -> AsyncIterator[Rig]:
    settings = make_settings(database_url, tmp_path, prism.url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        hub = app.state.hub
        outbox = build_outbox(hub.db, settings, actions=actions, feedback=feedback, clock=clock)
        hub.outbox = outbox
        street = await make_street(hub.db)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Rig(http, outbox, street, clock)
        await outbox.stop()


async def test_reply_1_accepts_the_latest_case(rig: Rig, actions: RecordingCaseActions) -> None:
    street = rig.street
    assert await rig.send(alert("a:1", street.worker_id, street.worker_phone, now=rig.clock())) == 1
    actions.latest[street.worker_id] = "C-20260302-0001"
    answer = await rig.sms(street.worker_phone, "1")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/xml")
    assert "由您处理" in answer.text
    assert actions.calls == [("accept", "C-20260302-0001", street.worker_id, "sms", "")]


async def test_reply_naming_a_case_and_done_with_note(rig: Rig, actions: RecordingCaseActions) -> None:
    street = rig.street
    assert (await rig.sms(street.english_phone, "ack c-20260302-0007")).status_code == 200
    answer = await rig.sms(street.english_phone, "DONE C-20260302-0007 fire put out")
    assert "Recorded: case C-20260302-0007" in answer.text
    assert actions.calls == [
        ("accept", "C-20260302-0007", street.english_id, "sms", ""),
        ("resolve", "C-20260302-0007", street.english_id, "sms", "fire put out"),
    ]


async def test_forged_or_unsigned_webhooks_change_nothing(rig: Rig, actions: RecordingCaseActions) -> None:
    street = rig.street
    actions.latest[street.worker_id] = "C-20260302-0001"
    assert (await rig.sms(street.worker_phone, "1", signature="forged+signature=")).status_code == 403
    assert (await rig.sms(street.worker_phone, "STOP", signature=None)).status_code == 403
    assert (
        await rig.post("/twilio/status/1", {"MessageStatus": "failed"}, signature=None)
    ).status_code == 403
    # Signed for another URL: the signature covers the path too.
    params = {"From": street.worker_phone, "Body": "1"}
    other = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC + "/elsewhere", params)
    assert (await rig.post("/twilio/sms", params, signature=other)).status_code == 403
    assert actions.calls == []
    async with rig.outbox.db.session() as s:
        assert (await s.get(Responder, street.worker_id)).sms_opt_out is False  # type: ignore[union-attr]


async def test_unknown_number_and_foreign_case_are_refused_politely(
    rig: Rig, actions: RecordingCaseActions
) -> None:
    answer = await rig.sms("+8613911112222", "1")
    assert answer.status_code == 200 and "未登记" in answer.text
    actions.foreign.add("C-20260302-0099")
    answer = await rig.sms(rig.street.english_phone, "1 C-20260302-0099")
    assert "not in your area" in answer.text
    assert actions.calls == []
    async with rig.outbox.db.session() as s:
        refused = list(
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "sms_refused"))).scalars()
        )
    assert [e.object_id for e in refused] == ["+8613911112222", rig.street.english_phone]


async def test_stop_and_start_switch_sms_off_and_on(rig: Rig, feedback: RecordingFeedback) -> None:
    street = rig.street
    assert "退订" in (await rig.sms(street.worker_phone, "STOP")).text
    assert (
        await rig.send(alert("stop:1", street.worker_id, street.worker_phone, now=rig.clock(), step_id=3))
        == 0
    )
    assert feedback.failed == [(3, "sms", "opt_out")] and requests_sent(rig.outbox, "sms") == 0
    assert "恢复" in (await rig.sms(street.worker_phone, "start")).text
    assert (
        await rig.send(alert("stop:2", street.worker_id, street.worker_phone, now=rig.clock(), step_id=4))
        == 1
    )
    assert requests_sent(rig.outbox, "sms") == 1


async def test_away_back_and_rating(rig: Rig, actions: RecordingCaseActions) -> None:
    family = "+8613700000009"
    actions.households[family] = [42]
    assert "外出" in (await rig.sms(family, "AWAY")).text
    assert "欢迎回家" in (await rig.sms(family, "back")).text
    rating = alert("rate:1", None, family, now=rig.clock(), kind="rating_request", step_id=None)
    assert await rig.send(rating) == 1
    assert "感谢" in (await rig.sms(family, "4")).text
    assert actions.calls == [
        ("set_away", family, True),
        ("set_away", family, False),
        ("rate", "C-20260302-0001", 4, family),
    ]
    assert (await rig.rows())[0].answer == "rated:4"


async def test_failed_sms_and_unanswered_call_are_reported(rig: Rig, feedback: RecordingFeedback) -> None:
    street = rig.street
    await rig.send(alert("f:1", street.worker_id, street.worker_phone, now=rig.clock(), step_id=21))
    [sms] = await rig.rows()
    for status in ("sent", "undelivered"):
        assert (
            await rig.post(f"/twilio/status/{sms.id}", {"MessageStatus": status, "ErrorCode": "30003"})
        ).status_code == 204
    assert feedback.failed == [(21, "sms", "undelivered (error 30003)")]
    # A late "sent" does not undo the outcome, nor report it twice.
    await rig.post(f"/twilio/status/{sms.id}", {"MessageStatus": "sent"})
    assert (await rig.rows())[0].status == "undelivered" and len(feedback.failed) == 1

    await rig.send(
        alert("f:2", street.worker_id, street.worker_phone, now=rig.clock(), step_id=22, channel="voice")
    )
    call = (await rig.rows())[1]
    await rig.post(f"/twilio/status/{call.id}", {"CallStatus": "no-answer", "CallSid": call.twilio_sid or ""})
    assert feedback.unanswered == [(22, "no-answer")]


async def test_no_reply_then_call_then_keypress_1_accepts(
    rig: Rig, actions: RecordingCaseActions, feedback: RecordingFeedback
) -> None:
    street = rig.street
    await rig.send(alert("loop:sms", street.worker_id, street.worker_phone, now=rig.clock(), step_id=31))
    rig.clock.advance(300)  # nobody answered: the scheduler's next step calls
    await rig.send(
        alert(
            "loop:call", street.worker_id, street.worker_phone, now=rig.clock(), step_id=32, channel="voice"
        )
    )
    call = (await rig.rows())[1]
    assert call.status == "queued" and requests_sent(rig.outbox, "voice") == 1
    keypress = await rig.post(
        f"/twilio/voice/{call.id}/gather", {"Digits": "1", "CallSid": call.twilio_sid or ""}
    )
    assert keypress.status_code == 200 and '<Say language="zh-CN">' in keypress.text
    assert actions.calls == [("accept", "C-20260302-0001", street.worker_id, "voice", "")]
    await rig.post(f"/twilio/status/{call.id}", {"CallStatus": "completed", "CallDuration": "42"})
    assert feedback.unanswered == []  # answered with a key: nothing to escalate
    assert (await rig.rows())[1].answer == "1"


async def test_call_completed_without_a_key_moves_on_and_2_passes(
    rig: Rig, actions: RecordingCaseActions, feedback: RecordingFeedback
) -> None:
    street = rig.street
    await rig.send(
        alert(
            "c:1",
            street.english_id,
            street.english_phone,
            now=rig.clock(),
            step_id=41,
            channel="voice",
            language="en",
        )
    )
    await rig.send(
        alert("c:2", street.worker_id, street.worker_phone, now=rig.clock(), step_id=42, channel="voice")
    )
    first, second = await rig.rows()
    await rig.post(f"/twilio/status/{first.id}", {"CallStatus": "completed", "CallDuration": "20"})
    assert feedback.unanswered == [(41, "no keypress")]
    retry = await rig.post(f"/twilio/voice/{second.id}/gather", {"Digits": "9"})
    assert "<Gather" in retry.text and actions.calls == []  # an unknown key: asked again
    await rig.post(f"/twilio/voice/{second.id}/gather", {"Digits": "2"})
    assert actions.calls == [("pass_on", "C-20260302-0001", street.worker_id, "voice")]
