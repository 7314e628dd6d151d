"""The demo stopped and started again on the same var/: its fleet starts counting from 0 and is heard at once.

Before, the hub remembered each device's highest sequence number and refused the restarted fleet's frames as
replays until the counters passed it: the fire scenario's four smoke alarms were dropped, no case, no SMS.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from alerts.casestore import CaseFilter, list_cases
from hub.app import Hub, build_hub
from hub.config import Settings
from hub.db.outbox import OutboxMessage
from tests.fleet import TEST_SECRET_KEY
from tests.simulate.test_demo_fleet import STREET, refused, runner_of


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    """Poll an async ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def highest_seq(hub: Hub) -> dict[str, int]:
    """The highest sequence number the hub holds for each device of the fleet (-1: never heard)."""
    out = {}
    for dev in runner_of(hub).fleet:
        entry = await hub.ingest.directory.lookup(dev.serial)
        status = hub.ingest.states.get(entry.id) if entry is not None else None
        out[dev.serial] = status.seq.highest if status is not None else -1
    return out


async def fire_cases_and_sms(hub: Hub) -> tuple[int, int]:
    """How many fire cases there are, and SMS rows in the outbox."""
    async with hub.db.session() as session:
        cases = await list_cases(session, CaseFilter(category="fire"))
        sms = (await session.scalars(select(OutboxMessage.id).where(OutboxMessage.channel == "sms"))).all()
    return len(cases), len(sms)


async def test_a_restarted_demo_opens_a_case_for_its_next_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"},
        mqtt={"port": 0},
        coap={"port": 0},
        simulate=STREET,
        var_dir=tmp_path / "var",
        secret_key=TEST_SECRET_KEY,
    )
    first = build_hub(settings)
    await first.start()
    try:
        # Every device counts well past what it will have sent when the next run's scenario comes.
        async def counted_far() -> bool:
            return min((await highest_seq(first)).values()) >= 20

        await until(counted_far, "twenty uplinks from every device")
        assert await fire_cases_and_sms(first) == (0, 0)  # the first run played no scenario
    finally:
        await first.stop()

    again = build_hub(settings)
    await again.start()
    try:
        runner = runner_of(again)
        touched = await runner.scenario("fire")
        assert {d.transport for d in runner.fleet if d.serial in touched} == {"mqtt", "coap"}

        async def case_and_sms() -> bool:
            cases, sms = await fire_cases_and_sms(again)
            return cases >= 1 and sms >= 1

        await until(case_and_sms, "a fire case and its first SMS")
        assert (await fire_cases_and_sms(again))[0] == 1
        assert refused(again, "mqtt", "replayed") == 0 and refused(again, "coap", "replayed") == 0
    finally:
        await again.stop()
    assert "[SMS #" in capsys.readouterr().out
