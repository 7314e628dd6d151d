"""The outbox against Prism through the real SDK, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from alerts.notifiers.base import Outgoing, Sent
from alerts.notifiers.delivery import settle_status
from alerts.notifiers.twilio_http import make_client
from alerts.notifiers.twilio_sms import TwilioSms
from alerts.outbox import Outbox
from hub.db import Database
from hub.db.base import AuditEvent
from hub.db.outbox import OutboxMessage
from tests.notify.conftest import FakeClock, RecordingFeedback, Street, alert, requests_sent


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.session() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def enqueue(outbox: Outbox, *notes: Any) -> int:
    async with outbox.db.session() as s:
        return await outbox.enqueue(s, list(notes))


async def test_sms_goes_out_once_per_key(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    outbox: Outbox = outbox_factory()
    note = alert("s1:r1:sms", street.worker_id, street.worker_phone, now=clock())
    assert await enqueue(outbox, note, note) == 1
    assert await enqueue(outbox, note) == 0  # the same step and person again: nothing new
    assert await outbox.run_once() == 1
    assert await outbox.run_once() == 0
    [row] = await rows(db)
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.twilio_sid is not None and row.twilio_sid.startswith("SM")
    assert row.street_id == street.street_id and row.urgent
    assert "C-20260302-0001" in (row.body or "") and "回复1接受" in (row.body or "")
    assert requests_sent(outbox, "sms") == 1


class CrashAfterSend(TwilioSms):
    """The real SMS channel, whose worker dies right after Twilio answered (before the outbox records it)."""

    async def send(self, message: Outgoing) -> Sent:
        sent = await super().send(message)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)
        return sent


async def test_crash_between_send_and_record_sends_no_second_request(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock, feedback: RecordingFeedback
) -> None:
    first: Outbox = outbox_factory()
    sms = first.channels["sms"]
    assert isinstance(sms, TwilioSms)
    first.channels["sms"] = CrashAfterSend(sms._client, first.settings.twilio)
    await enqueue(first, alert("crash:1", street.worker_id, street.worker_phone, now=clock(), step_id=77))
    await first.start()
    first.wake()
    for _ in range(200):  # the worker claims, sends, and dies before the record
        if requests_sent(first, "sms") == 1:
            break
        await asyncio.sleep(0.02)
    await first.stop()
    [row] = await rows(db)
    assert row.status == "sending" and requests_sent(first, "sms") == 1

    restarted: Outbox = outbox_factory()
    clock.advance(5)
    assert await restarted.run_once() == 0  # within the lease: left for a status callback
    clock.advance(restarted.policy.sending_lease_s)
    assert await restarted.run_once() == 0
    [row] = await rows(db)
    assert row.status == "unknown"
    assert feedback.failed == [(77, "sms", "lost between send and record; not resent")]
    assert requests_sent(restarted, "sms") == 1  # one request in all, across the restart
    async with db.session() as s:
        audit = await s.scalar(select(AuditEvent).where(AuditEvent.action == "notify_unknown"))
    assert audit is not None and audit.object_id == str(row.id)
    # Twilio's status callback still settles it.
    await settle_status(restarted, row.id, {"MessageStatus": "delivered", "MessageSid": "SM1"})
    [row] = await rows(db)
    assert (row.status, row.twilio_sid) == ("delivered", "SM1")


async def test_unreachable_twilio_is_retried_and_a_refusal_is_final(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock, feedback: RecordingFeedback
) -> None:
    outbox: Outbox = outbox_factory()
    sms = outbox.channels["sms"]
    assert isinstance(sms, TwilioSms)
    prism_url = sms._client.api.base_url
    sms._client.api.base_url = "http://127.0.0.1:9"  # discard port: nothing listens
    await enqueue(outbox, alert("retry:1", street.worker_id, street.worker_phone, now=clock(), step_id=5))
    await outbox.run_once()
    [row] = await rows(db)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at > clock() and row.reason is not None
    assert await outbox.run_once() == 0  # not before the backoff
    sms._client.api.base_url = prism_url
    clock.advance(60)
    assert await outbox.run_once() == 1
    [row] = await rows(db)
    assert (row.status, row.attempts) == ("queued", 2)

    # An account SID Twilio's spec refuses: Prism answers 4xx, and a retry cannot help.
    bad = outbox.settings.twilio.model_copy(update={"account_sid": "ACnot-a-valid-sid"})
    await sms.close()
    outbox.channels["sms"] = TwilioSms(make_client(bad, lambda _channel: None, 5.0), bad)
    await enqueue(
        outbox,
        alert(
            "refused:1",
            street.worker_id,
            street.worker_phone,
            now=clock(),
            step_id=6,
            code="C-20260302-0002",
            case_id=2,
        ),
    )
    await outbox.run_once()
    refused = (await rows(db))[1]
    assert refused.status == "failed" and "4" in (refused.reason or "")
    assert feedback.failed and feedback.failed[0][:2] == (6, "sms")


async def test_opted_out_responder_gets_no_sms_and_escalation_hears_of_it(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock, feedback: RecordingFeedback
) -> None:
    from hub.db.people import Responder

    async with db.session() as s:
        (await s.get(Responder, street.worker_id)).sms_opt_out = True  # type: ignore[union-attr]
    outbox: Outbox = outbox_factory()
    await enqueue(outbox, alert("optout:1", street.worker_id, street.worker_phone, now=clock(), step_id=9))
    assert await outbox.run_once() == 0
    [row] = await rows(db)
    assert (row.status, row.reason) == ("suppressed", "opt_out")
    assert feedback.failed == [(9, "sms", "opt_out")]
    assert requests_sent(outbox, "sms") == 0


async def test_voice_call_carries_say_and_gather(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    outbox: Outbox = outbox_factory()
    await enqueue(
        outbox,
        alert("call:1", street.english_id, street.english_phone, now=clock(), channel="voice", language="en"),
    )
    assert await outbox.run_once() == 1
    [row] = await rows(db)
    assert row.status == "queued" and requests_sent(outbox, "voice") == 1
    assert row.price == 0.03  # Prism's example call reports its price; kept positive
    assert "Press 1 to accept" in (row.body or "")
