"""uvicorn's server, made to end the live streams when it stops."""

from __future__ import annotations

import socket

import uvicorn

from hub.ingest.events import EventBus

__all__ = ["HubServer"]


class HubServer(uvicorn.Server):  # type: ignore[misc]
    """Ends every /api/v1/events stream first when it stops.

    uvicorn waits for open responses before the lifespan shutdown, and a stream never ends by itself: a
    console watching the live stream held every stop (Ctrl-C, SIGTERM) for ever.
    """

    def __init__(self, config: uvicorn.Config, bus: EventBus) -> None:
        super().__init__(config)
        self.bus = bus

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Close the event bus (each stream sends its last event and ends), then stop as uvicorn does."""
        self.bus.close()
        await super().shutdown(sockets)
