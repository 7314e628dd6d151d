"""Rate limits, bundling, the street budget and technician test mode, through the outbox and Prism."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from alerts.outbox import Outbox
from hub.db import Database
from hub.db.outbox import OutboxMessage
from tests.notify.conftest import FakeClock, Street, alert, requests_sent


async def rows(db: Database) -> list[OutboxMessage]:
    async with db.session() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def enqueue(outbox: Outbox, *notes: Any) -> None:
    async with outbox.db.session() as s:
        await outbox.enqueue(s, list(notes))


def minor(key: str, street: Street, clock: FakeClock, n: int, **kw: Any) -> Any:
    return alert(
        key,
        street.worker_id,
        street.worker_phone,
        now=clock(),
        code=f"C-20260302-{n:04d}",
        case_id=n,
        category="battery",
        severity="minor",
        **kw,
    )


async def test_per_responder_rate_limit_defers_then_bundles(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    outbox: Outbox = outbox_factory(per_responder_max=2, per_responder_window_s=600)
    for n in (1, 2, 3, 4):
        await enqueue(outbox, minor(f"r:{n}", street, clock, n))
        await outbox.run_once()
        clock.advance(30)
    assert requests_sent(outbox, "sms") == 2
    waiting = [r for r in await rows(db) if r.status == "pending"]
    assert [r.case_id for r in waiting] == [3, 4] and waiting[0].reason == "responder rate limit"
    clock.advance(600)
    assert await outbox.run_once() == 1  # the two that waited go out as one message
    third, fourth = (await rows(db))[2:]
    assert (
        fourth.bundle_id == third.id
        and "C-20260302-0003" in (third.body or "")
        and "C-20260302-0004" in (third.body or "")
    )
    assert requests_sent(outbox, "sms") == 3


async def test_urgent_alert_skips_the_responder_limit(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    outbox: Outbox = outbox_factory(per_responder_max=1)
    await enqueue(outbox, minor("u:1", street, clock, 1))
    await outbox.run_once()
    await enqueue(
        outbox,
        alert("u:2", street.worker_id, street.worker_phone, now=clock(), code="C-20260302-0002", case_id=2),
    )
    assert await outbox.run_once() == 1
    assert requests_sent(outbox, "sms") == 2


async def test_alarms_due_within_seconds_make_one_message(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    outbox: Outbox = outbox_factory(bundle_window_s=10)
    await enqueue(
        outbox,
        alert("b:1", street.worker_id, street.worker_phone, now=clock(), code="C-20260302-0001", case_id=1),
    )
    await outbox.run_once()  # the first alarm goes at once
    clock.advance(2)
    await enqueue(
        outbox,
        alert(
            "b:2",
            street.worker_id,
            street.worker_phone,
            now=clock(),
            code="C-20260302-0002",
            case_id=2,
            step_id=11,
        ),
        alert(
            "b:3",
            street.worker_id,
            street.worker_phone,
            now=clock(),
            code="C-20260302-0002",
            case_id=2,
            step_id=12,
        ),
        alert(
            "b:4",
            street.worker_id,
            street.worker_phone,
            now=clock(),
            code="C-20260302-0003",
            case_id=3,
            category="panic",
        ),
    )
    assert await outbox.run_once() == 0  # inside the window: they wait for each other
    clock.advance(10)
    assert await outbox.run_once() == 1
    assert requests_sent(outbox, "sms") == 2
    leader = (await rows(db))[1]
    assert (
        leader.body is not None
        and leader.body.count("C-20260302-0002") == 1
        and "C-20260302-0003" in leader.body
    )
    assert [r.bundle_id for r in (await rows(db))[2:]] == [leader.id, leader.id]


async def test_per_case_limit(db: Database, street: Street, outbox_factory: Any, clock: FakeClock) -> None:
    outbox: Outbox = outbox_factory(per_case_max=1)
    await enqueue(outbox, alert("k:1", street.worker_id, street.worker_phone, now=clock()))
    await enqueue(
        outbox, alert("k:2", street.english_id, street.english_phone, now=clock(), step_id=11, language="en")
    )
    await outbox.run_once()
    assert requests_sent(outbox, "sms") == 1
    assert (await rows(db))[1].reason == "case rate limit"


async def test_budget_warns_at_80_percent_and_stops_all_but_urgent(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    # Each Chinese alert is two UCS-2 segments at 1.00: the 4th reaches 80 % of 10.00.
    outbox: Outbox = outbox_factory(daily_budget=10.0, sms_segment_price=1.0, per_responder_max=100)
    for n in range(1, 5):
        await enqueue(outbox, minor(f"m:{n}", street, clock, n))
        await outbox.run_once()
    warnings = [r for r in await rows(db) if r.kind == "budget_warning"]
    assert [(w.phone, w.status) for w in warnings] == [(street.command_phone, "pending")]
    await outbox.run_once()  # the warning itself goes out (and costs)
    warning = (await rows(db))[4]
    assert (
        warning.status == "queued"
        and "【费用提醒】" in (warning.body or "")
        and "80%" in (warning.body or "")
    )
    await enqueue(outbox, minor("m:9", street, clock, 9))
    await enqueue(
        outbox,
        alert("m:10", street.worker_id, street.worker_phone, now=clock(), code="C-20260302-0010", case_id=10),
    )
    await outbox.run_once()
    over, urgent = (await rows(db))[5:]
    assert (over.status, over.reason) == ("suppressed", "budget")
    assert urgent.status == "queued"
    assert requests_sent(outbox, "sms") == 6


async def test_technician_confirmation(
    db: Database, street: Street, outbox_factory: Any, clock: FakeClock
) -> None:
    outbox: Outbox = outbox_factory()
    tech = "+8613600000077"
    note = alert("test:dev42", None, tech, now=clock(), kind="test_confirmation", step_id=None, code="")
    await enqueue(outbox, note)
    assert await outbox.run_once() == 1
    [row] = await rows(db)
    assert row.phone == tech and row.responder_id is None
    assert (row.body or "").startswith("【测试】已收到SMK-0001的火警测试报警")
