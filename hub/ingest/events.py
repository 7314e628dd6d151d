"""The live event stream: every accepted reading fanned out to bounded subscriber queues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

__all__ = ["CLOSING", "EventBus"]


# The last event of every stream: the hub is stopping (a stream never ends by itself, and the HTTP server
# waits for open responses before it stops).
CLOSING: dict[str, Any] = {"type": "closing"}


class EventBus:
    """Publish without waiting; a slow subscriber loses its oldest events, never blocks ingest."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._size = queue_size
        self.dropped = 0
        self.closed = False

    def close(self) -> None:
        """End every stream: each subscriber gets CLOSING as its last event, and so do later ones at once."""
        self.closed = True
        self.publish(CLOSING)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to every subscriber."""
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        """How many subscribers listen now."""
        return len(self._queues)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue that receives every event published while the context is open."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._size)
        if self.closed:
            queue.put_nowait(CLOSING)
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)
