"""The outbox worker sends in tasks of their own: an alarm never waits for another one's request to Twilio."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from alerts.notifiers.base import Outgoing, Sent
from alerts.notifiers.twilio_http import make_client
from alerts.notifiers.twilio_sms import TwilioSms
from alerts.outbox import Outbox
from hub.config import TwilioSettings
from hub.db import Database
from hub.priority import UrgentLane
from tests.notify.conftest import FakeClock, Street, alert, requests_sent
from tests.notify.test_limits import enqueue, minor, rows


class HeldSms(TwilioSms):
    """The real SMS channel, holding requests to one phone until released (a slow Twilio answer)."""

    def __init__(self, inner: TwilioSms, settings: TwilioSettings, held: str) -> None:
        super().__init__(inner._client, settings)
        self.held, self.entered, self.release = held, asyncio.Event(), asyncio.Event()

    async def send(self, message: Outgoing) -> Sent:
        if message.to == self.held:
            self.entered.set()
            await self.release.wait()
        return await super().send(message)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(500):  # bounded: the worker runs on its own
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the worker did not get there")


async def _held(outbox: Outbox, phone: str) -> HeldSms:
    sms = outbox.channels["sms"]
    assert isinstance(sms, TwilioSms)
    held = HeldSms(sms, outbox.settings.twilio, phone)
    outbox.channels["sms"] = held
    return held


async def first_send_held(
    outbox_factory: Any, street: Street, clock: FakeClock, key: str, **policy: Any
) -> tuple[Outbox, HeldSms]:
    """A started outbox whose first alarm (to the grid worker) is held inside the SMS channel's send."""
    outbox: Outbox = outbox_factory(**policy)
    held = await _held(outbox, street.worker_phone)
    await outbox.start()
    await enqueue(outbox, alert(key, street.worker_id, street.worker_phone, now=clock()))
    await asyncio.wait_for(held.entered.wait(), 10)
    return outbox, held


async def test_an_alarm_goes_out_while_another_request_is_in_flight(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    outbox, held = await first_send_held(outbox_factory, street, clock, "slow:1")
    second = alert(
        "fast:2", street.english_id, street.english_phone, now=clock(), code="C-20260302-0002", case_id=2
    )
    await enqueue(outbox, second)

    async def second_queued() -> bool:
        return [r.status for r in await rows(db)] == ["sending", "queued"]

    await until(second_queued)  # the second alarm went out while the first one's request is held
    assert requests_sent(outbox, "sms") == 1
    held.release.set()

    async def both_queued() -> bool:
        return [r.status for r in await rows(db)] == ["queued", "queued"]

    await until(both_queued)
    assert requests_sent(outbox, "sms") == 2


async def test_a_request_in_flight_counts_for_the_bundle_window(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    outbox, held = await first_send_held(outbox_factory, street, clock, "b:1", bundle_window_s=10)
    later = alert(
        "b:2", street.worker_id, street.worker_phone, now=clock(), code="C-20260302-0002", case_id=2
    )
    await enqueue(outbox, later)

    async def deferred() -> bool:
        return (await rows(db))[1].reason == "bundled"

    await until(deferred)  # the first message is still with Twilio: the second one waits for the window
    assert (await rows(db))[1].status == "pending" and requests_sent(outbox, "sms") == 0
    held.release.set()

    async def first_queued() -> bool:
        return (await rows(db))[0].status == "queued"

    await until(first_queued)
    assert requests_sent(outbox, "sms") == 1


async def test_start_warms_the_twilio_client_and_reports_a_refusal(
    outbox_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    good: Outbox = outbox_factory()
    bad: Outbox = outbox_factory()
    refused = bad.settings.twilio.model_copy(update={"account_sid": "ACnot-a-valid-sid"})
    await bad.channels["sms"].close()
    bad.channels["voice"] = bad.channels["sms"] = TwilioSms(
        make_client(refused, lambda _channel: None, 5.0), refused
    )
    with caplog.at_level(logging.WARNING, logger="alerts.outbox"):
        await good.start()
        await bad.start()

        async def warned() -> bool:
            return any("warm-up failed" in r.getMessage() for r in caplog.records)

        await until(warned)  # the refused SID shows at start, not with the first alarm
    messages = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert len(messages) == 1 and messages[0].startswith("outbox: sms channel warm-up failed")


async def test_no_claim_while_every_send_slot_is_taken(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    outbox, held = await first_send_held(outbox_factory, street, clock, "slot:1", concurrency=1)
    second = alert(
        "slot:2", street.english_id, street.english_phone, now=clock(), code="C-20260302-0002", case_id=2
    )
    await enqueue(outbox, second)
    await asyncio.sleep(0.3)  # room for a wrong claim: the second row must stay pending, not queue "sending"
    assert [r.status for r in await rows(db)] == ["sending", "pending"]
    held.release.set()

    async def both_queued() -> bool:
        return [r.status for r in await rows(db)] == ["queued", "queued"]

    await until(both_queued)


async def test_an_urgent_row_holds_the_lane_until_it_is_handed_to_its_channel(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    """Committed urgent rows hold the lane (the MQTT reader yields); handed to the channel they release it,
    before Twilio answers. Minor rows never hold it."""
    outbox: Outbox = outbox_factory()
    outbox.lane = lane = UrgentLane(max_yield_s=30)
    held = await _held(outbox, street.worker_phone)
    await enqueue(outbox, minor("m:1", street, clock, 1))
    assert lane.holds == 0
    await enqueue(outbox, alert("u:2", street.worker_id, street.worker_phone, now=clock(), case_id=2))
    assert lane.holds == 1  # from the commit on, before the worker runs
    await outbox.start()
    await asyncio.wait_for(held.entered.wait(), 10)  # inside the channel's send: Twilio has not answered
    assert lane.holds == 0
    held.release.set()

    async def all_sent() -> bool:
        return {r.status for r in await rows(db)} == {"queued"}

    await until(all_sent)
    assert lane.lapsed == 0
