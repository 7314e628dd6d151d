"""The urgent lane: what a bulk reader awaits while an alarm is on its way, and the bounds on both sides."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hub.app import build_hub
from hub.priority import UrgentLane
from tests.fleet import hub_settings


async def test_nothing_urgent_means_no_wait() -> None:
    lane = UrgentLane()
    assert lane.yield_to() is None
    release = lane.hold()
    release()
    release()  # twice is harmless
    assert lane.holds == 0 and lane.yield_to() is None and lane.yields == 0


async def test_a_reader_waits_until_every_hold_is_released() -> None:
    lane = UrgentLane(max_yield_s=30)
    first, second = lane.hold(), lane.hold()
    wait = lane.yield_to()
    assert wait is not None
    waiting = asyncio.ensure_future(wait)
    first()
    await asyncio.sleep(0.01)
    assert not waiting.done()  # one piece of urgent work is still in flight
    second()
    await asyncio.wait_for(waiting, 5)
    assert (lane.yields, lane.cut_short, lane.holds) == (1, 0, 0)


async def test_a_long_yield_is_cut_short_and_telemetry_then_reads_freely_for_as_long() -> None:
    lane = UrgentLane(max_yield_s=0.05)
    release = lane.hold()
    wait = lane.yield_to()
    assert wait is not None
    await asyncio.wait_for(wait, 5)  # ends by the bound: the hold is still there
    assert lane.cut_short == 1 and lane.holds == 1
    assert lane.yield_to() is None  # the free period: an alarm storm leaves telemetry half the loop
    await asyncio.sleep(0.06)
    again = lane.yield_to()
    assert again is not None  # after it, readers yield again
    release()
    await asyncio.wait_for(again, 5)
    assert (lane.yields, lane.cut_short) == (2, 1)


async def test_a_hold_nobody_releases_lapses() -> None:
    lane = UrgentLane(max_yield_s=30, max_hold_s=0.05)
    lane.hold()
    wait = lane.yield_to()
    assert wait is not None
    await asyncio.wait_for(wait, 5)
    assert (lane.holds, lane.lapsed, lane.cut_short) == (0, 1, 0)


def test_the_hub_shares_one_lane_between_alerts_outbox_and_the_mqtt_reader(tmp_path: Path) -> None:
    """Wiring: the queue that takes holds, the outbox that passes them on and the reader that yields."""
    settings = hub_settings(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", tmp_path, mqtt={"mode": "external"})
    hub = build_hub(settings)
    assert hub.evaluator.queue.lane is hub.lane
    assert hub.outbox.lane is hub.lane
    assert hub.mqtt.lane is hub.lane
    assert hub.evaluator.queue.urgent_severities == set(settings.twilio.policy.urgent_severities)
