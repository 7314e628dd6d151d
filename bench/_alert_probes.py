"""Alert latency bench, hub side: the stamped SMS channel, the statement and GC probe, the lane's counters."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from sqlalchemy import event

from alerts.notifiers.base import ChannelSender, Outgoing, Sent

__all__ = ["LaneCounts", "Probe", "StampedChannel"]


class StampedChannel:
    """The outbox's SMS channel, noting (perf_counter, phone) as each request is handed to the SDK."""

    def __init__(self, inner: ChannelSender, stamps: dict[str, float]) -> None:
        self.inner, self.stamps, self.name = inner, stamps, inner.name

    async def send(self, message: Outgoing) -> Sent:
        """Stamp, then send through the real channel."""
        self.stamps.setdefault(message.to, time.perf_counter())
        return await self.inner.send(message)

    async def close(self) -> None:
        """Close the real channel."""
        await self.inner.close()


class Probe:
    """Counts the path's SQL statements (case consumer and outbox worker tasks) and full collections."""

    PATH_TASKS = ("cases-alert-consumer", "outbox-worker")

    def __init__(self, engine: Any) -> None:
        self.statements = 0
        self.collections: list[tuple[float, float]] = []  # (start, seconds) of generation-2 runs
        self._gc_start = 0.0
        event.listen(engine, "before_cursor_execute", self._statement)
        gc.callbacks.append(self._gc)

    def _statement(self, *_args: Any) -> None:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return
        if task is not None and task.get_name() in self.PATH_TASKS:
            self.statements += 1

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.collections.append((self._gc_start, time.perf_counter() - self._gc_start))

    def close(self) -> None:
        """Stop collecting."""
        gc.callbacks.remove(self._gc)


class LaneCounts:
    """The urgent lane's counters at a start, to tell what a phase added (zeros on a hub without a lane)."""

    def __init__(self, hub: Any) -> None:
        self.lane = getattr(hub, "lane", None)
        self.start = self._now()

    def _now(self) -> tuple[int, int, int]:
        lane = self.lane
        return (0, 0, 0) if lane is None else (lane.yields, lane.cut_short, lane.lapsed)

    def since(self) -> tuple[int, int, int]:
        """Yields, yields cut short and lapsed holds since the start."""
        now = self._now()
        return now[0] - self.start[0], now[1] - self.start[1], now[2] - self.start[2]
