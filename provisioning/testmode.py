"""Technician test mode: a device in test for N minutes raises no real alarms, and leaves test by itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.devices import Device
from hub.errors import Conflict, InvalidInput
from provisioning.audit import Clock, record, utcnow
from provisioning.devices import TRANSITIONS, Actor, add_event, effective_state

__all__ = [
    "MAX_MINUTES",
    "MIN_MINUTES",
    "TEST_STARTED",
    "end_test",
    "expire_tests",
    "is_in_test",
    "start_test",
]

MIN_MINUTES, MAX_MINUTES = 1, 240
# The audit action of each test start; its detail holds the phone the confirmations go to (alerts/testmode.py).
TEST_STARTED = "device.test_started"


def is_in_test(device: Device, now: dt.datetime) -> bool:
    """Tell whether ``device`` is in test at ``now`` (an expired period is over without any sweep)."""
    return device.state == "test" and device.test_until is not None and now < device.test_until


async def start_test(
    session: AsyncSession,
    device: Device,
    minutes: int,
    *,
    actor: Actor,
    clock: Clock = utcnow,
    notify_phone: str | None = None,
) -> Device:
    """Put ``device`` in test until now + ``minutes``, remembering who (and a phone for the confirmations).

    A second call extends or shortens it; the phone of the latest call is the one used.
    """
    if not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise InvalidInput(f"minutes must be between {MIN_MINUTES} and {MAX_MINUTES}", field="minutes")
    now = clock()
    current = effective_state(device, now)
    if current != "test" and "test" not in TRANSITIONS[current]:
        raise Conflict(f"device {device.serial} is {current}; it cannot be put in test")
    if current != "test":
        # Remember the state to come back to; an expired period's own origin is the right one.
        device.test_from = current
    before = device.state
    device.state = "test"
    device.test_until = now + dt.timedelta(minutes=minutes)
    device.test_by = actor.name
    device.updated_at = now
    await session.flush()
    note = f"test for {minutes} min, until {device.test_until.isoformat()}"
    add_event(session, device, "test", actor, note=note, at=now, before=before)
    detail = {"until": device.test_until.isoformat(), "notify_phone": notify_phone}
    record(session, actor.name, actor.channel, TEST_STARTED, "device", device.id, detail, lambda: now)
    return device


async def end_test(
    session: AsyncSession, device: Device, *, actor: Actor, note: str = "test ended", clock: Clock = utcnow
) -> Device:
    """Take ``device`` out of test now, back to the state it had before."""
    if device.state != "test":
        raise Conflict(f"device {device.serial} is not in test")
    now = clock()
    back = device.test_from or "active"
    device.state = back
    device.test_until = device.test_by = device.test_from = None
    device.updated_at = now
    await session.flush()
    add_event(session, device, back, actor, note=note, at=now, before="test")
    return device


async def expire_tests(
    session: AsyncSession, *, clock: Clock = utcnow, limit: int = 1000
) -> Sequence[Device]:
    """Record the end of every test period that has passed (bookkeeping; reads never depend on it)."""
    now = clock()
    query = (
        select(Device)
        .where(Device.state == "test", Device.test_until <= now)
        .order_by(Device.test_until)
        .limit(limit)
    )
    expired = (await session.scalars(query)).all()
    system = Actor("system", "system")
    for device in expired:
        await end_test(session, device, actor=system, note="test period expired", clock=clock)
    return expired
