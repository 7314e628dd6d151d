"""The live event stream for the command center: Server-Sent Events of readings, offline devices, refused alarms."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from hub.api.auth import Principal, require_roles
from hub.api.deps import HubDep
from hub.api.scope import PlacePaths, Scope
from hub.ingest.events import CLOSING

__all__ = ["KEEPALIVE", "router"]

router = APIRouter(prefix="/api/v1", tags=["live"])
Watcher = Annotated[Principal, Depends(require_roles("operator"))]
# Proxies close idle streams; a comment line every so often keeps it open and notices gone clients.
KEEPALIVE = 15.0
# How long a limited stream trusts the place paths it looked up.
PATHS_TTL = 60.0


def _frame(event: dict[str, Any]) -> str:
    return f"event: {event.get('type', 'message')}\ndata: {json.dumps(event, ensure_ascii=False, default=str)}\n\n"


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}},
)
async def events(hub: HubDep, principal: Watcher, request: Request) -> StreamingResponse:
    """Every accepted reading, device going offline and refused alarm, as they happen (text/event-stream).

    A key limited to places sees the events of devices inside them only.
    """
    scope = Scope.of(principal)

    async def stream() -> AsyncIterator[str]:
        paths, fresh_until = PlacePaths(hub), time.monotonic() + PATHS_TTL
        async with hub.ingest.bus.subscribe() as queue:
            yield "retry: 3000\n: connected\n\n"
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if scope.limited:
                    if time.monotonic() > fresh_until:  # places move: look again now and then
                        paths, fresh_until = PlacePaths(hub), time.monotonic() + PATHS_TTL
                    serial = event.get("device") or event.get("serial")
                    if not isinstance(serial, str) or not scope.inside(await paths.of_serial(serial)):
                        continue
                yield _frame(event)
                if event is CLOSING:
                    return

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
