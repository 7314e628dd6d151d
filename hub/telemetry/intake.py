"""A bounded intake queue with flush/close markers, cut into batches by size and age."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hub.errors import StoreError

__all__ = ["Close", "Flush", "Intake", "Marker"]

T = TypeVar("T")


@dataclass(slots=True)
class Flush:
    """Resolve ``done`` once everything queued before this marker is stored."""

    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(slots=True)
class Close:
    """Store what precedes, then stop the writer."""


Marker = Flush | Close


class Intake(Generic[T]):
    """FIFO of items (bounded) and markers (never refused); one consumer task."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._queue: deque[T | Marker] = deque()
        self._items = 0
        # An Event rather than asyncio.Queue: wait_for(queue.get()) may lose an item on timeout in 3.11.
        self._ready = asyncio.Event()
        self._low: list[tuple[int, asyncio.Future[None]]] = []  # (level, resolved at or below it)

    def __len__(self) -> int:
        return self._items

    def put_nowait(self, item: T) -> bool:
        """Append an item; False if the queue is full."""
        if self._items >= self.maxsize:
            return False
        self._queue.append(item)
        self._items += 1
        self._ready.set()
        return True

    def drained_to(self, level: int) -> asyncio.Future[None]:
        """A future resolved once at most ``level`` items are queued (backpressure for producers)."""
        future = asyncio.get_running_loop().create_future()
        if self._items <= level:
            future.set_result(None)
        else:
            self._low.append((level, future))
        return future

    def _wake_low(self) -> None:
        keep = []
        for level, future in self._low:
            if future.done():
                continue
            if self._items <= level:
                future.set_result(None)
            else:
                keep.append((level, future))
        self._low = keep

    def put_marker(self, marker: Marker) -> None:
        """Append a marker regardless of the bound."""
        self._queue.append(marker)
        self._ready.set()

    async def flushed(self, writer: asyncio.Task[None] | None) -> None:
        """Return once ``writer`` has handled everything put before now; StoreError if it stopped first."""
        if writer is None:
            return
        marker = Flush()
        self.put_marker(marker)
        await asyncio.wait({marker.done, writer}, return_when=asyncio.FIRST_COMPLETED)
        if not marker.done.done():
            raise StoreError("telemetry writer stopped")

    def drain_items(self) -> list[T]:
        """Remove every item (markers stay, in order) for the overflow path."""
        items: list[T] = []
        kept: deque[T | Marker] = deque()
        for entry in self._queue:
            if isinstance(entry, Flush | Close):
                kept.append(entry)
            else:
                items.append(entry)
        self._queue = kept
        self._items = 0
        if self._low:
            self._wake_low()
        return items

    def push_back(self, items: list[T]) -> None:
        """Put drained items back in front, in order."""
        self._queue.extendleft(reversed(items))
        self._items += len(items)
        if items:
            self._ready.set()

    async def _wait(self, timeout: float | None) -> bool:
        """Wait until something is queued; False on timeout."""
        if self._queue:
            return True
        self._ready.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def _take(self, limit: int, batch: list[T]) -> Marker | None:
        """Move up to ``limit`` items into ``batch``; stop at (and return) a marker."""
        queue = self._queue
        while queue and limit > 0:
            entry = queue.popleft()
            if isinstance(entry, Flush | Close):
                if self._low:
                    self._wake_low()
                return entry
            batch.append(entry)
            self._items -= 1
            limit -= 1
        if self._low:
            self._wake_low()
        return None

    async def next_batch(
        self, size: int, age: float, idle: float | None
    ) -> tuple[list[T], Marker | None] | None:
        """Wait up to ``idle`` for a first entry, then gather up to ``size`` items for at most ``age`` s."""
        if not await self._wait(idle):
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + age
        batch: list[T] = []
        while True:
            marker = self._take(size - len(batch), batch)
            if marker is not None or len(batch) >= size:
                return batch, marker
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._wait(remaining):
                return batch, None
