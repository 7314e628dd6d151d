"""Urgent work first: the bulk telemetry reader yields the event loop to an alarm on its way to a phone.

An urgent alert is held from the moment ingest queues it until the outbox has handed its message to Twilio.
Meanwhile the MQTT reader stops after its current turn, so the case's statements and the send don't each
wait behind a turn of telemetry. Both sides are bounded: one yield lasts at most ``max_yield_s``, after
which telemetry reads freely for as long again (an alarm storm leaves it at least half of the loop), and a
hold nobody releases lapses after ``max_hold_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["UrgentLane"]


class UrgentLane:
    """Counts urgent work in flight; ``yield_to`` tells a bulk reader what to await before it reads on."""

    def __init__(self, max_yield_s: float = 0.05, max_hold_s: float = 2.0) -> None:
        self.max_yield_s = max_yield_s
        self.max_hold_s = max_hold_s
        self.holds = 0
        self.yields = 0  # times a reader waited
        self.cut_short = 0  # of which ended by max_yield_s, not by the urgent work finishing
        self.lapsed = 0  # holds nobody released within max_hold_s
        self._idle: asyncio.Future[None] | None = None
        self._free_until = 0.0

    def hold(self) -> Callable[[], None]:
        """Mark one piece of urgent work; call what is returned once it is done (again is harmless)."""
        self.holds += 1
        lapse: asyncio.TimerHandle | None = None

        def release(lapsing: bool = False) -> None:
            nonlocal lapse
            if lapse is None:
                return
            lapse.cancel()
            lapse = None
            self.lapsed += lapsing
            self.holds -= 1
            if not self.holds and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)

        lapse = asyncio.get_running_loop().call_later(self.max_hold_s, release, True)
        return release

    def yield_to(self) -> Awaitable[None] | None:
        """None when nothing urgent is in flight (or telemetry's free time after a long yield); else what to await."""
        if not self.holds:
            return None
        loop = asyncio.get_running_loop()
        if loop.time() < self._free_until:
            return None
        if self._idle is None or self._idle.done():
            self._idle = loop.create_future()
        self.yields += 1
        return self._wait(self._idle)

    async def _wait(self, idle: asyncio.Future[None]) -> None:
        try:
            async with asyncio.timeout(self.max_yield_s):
                await asyncio.shield(idle)
        except TimeoutError:
            self.cut_short += 1
            self._free_until = asyncio.get_running_loop().time() + self.max_yield_s
