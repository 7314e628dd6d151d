"""Telemetry queries, the live state of a device, and refused uplinks."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from hub.api.auth import Principal, require_roles
from hub.api.deps import INSTANT_HELP, HubDep, Instant
from hub.api.scope import PlacePaths, Scope
from hub.errors import InvalidInput, NotFound
from hub.ingest.directory import DeviceEntry

__all__ = ["MAX_POINTS", "device_for", "router"]

router = APIRouter(prefix="/api/v1", tags=["telemetry"])
Reader = Annotated[Principal, Depends(require_roles("operator", "technician", "responder", "integrator"))]
Staff = Annotated[Principal, Depends(require_roles("operator", "technician"))]
# One answer is meant for a chart, not a data export.
MAX_POINTS = 10_000
# The widest bucket: ten years.
MAX_EVERY = 10 * 366 * 86_400.0


async def device_for(hub: Any, serial: str, principal: Principal) -> DeviceEntry:
    """The device with ``serial`` if the principal may see it (404 otherwise, or 403 outside its places)."""
    entry: DeviceEntry | None = await hub.ingest.directory.lookup(serial)
    if entry is None:
        raise NotFound(f"no device with serial {serial!r}", field="serial")
    scope = Scope.of(principal)
    if scope.limited:
        path = await PlacePaths(hub).of_place(entry.place_id)
        if path is None:
            raise NotFound(f"no device with serial {serial!r}", field="serial")
        if not scope.inside(path):
            raise await scope.refuse(hub, f"device {serial!r}")
    return entry


@router.get("/devices/{serial}/telemetry")
async def telemetry(
    serial: str,
    hub: HubDep,
    principal: Reader,
    metric: Annotated[str, Query(min_length=1, max_length=64)],
    start: Annotated[Instant | None, Query(description=INSTANT_HELP)] = None,
    end: Annotated[Instant | None, Query(description=INSTANT_HELP)] = None,
    every: Annotated[
        float | None,
        Query(gt=0, le=MAX_EVERY, description="bucket width in seconds; mean per bucket"),
    ] = None,
) -> dict[str, Any]:
    """Samples of one metric of one device in [start, end); default: the last 24 hours."""
    entry = await device_for(hub, serial, principal)
    if metric not in entry.driver.metrics:
        known = ", ".join(sorted(entry.driver.metrics))
        raise InvalidInput(f"a {entry.kind} device has no metric {metric!r}; it has {known}", field="metric")
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone, e.g. 2026-11-28T08:00:00+08:00", field=name)
    end = end or hub.clock()
    start = start or end - dt.timedelta(days=1)
    if start >= end:
        raise InvalidInput("start must be before end", field="start")
    span = (end - start).total_seconds()
    if every is not None and span / every > MAX_POINTS:
        raise InvalidInput(f"{span / every:.0f} buckets asked; at most {MAX_POINTS}", field="every")
    await hub.store.flush()
    samples = await hub.store.query(serial, metric, start.timestamp(), end.timestamp(), every)
    return {
        "device": serial,
        "metric": metric,
        "unit": entry.driver.metrics[metric].unit,
        "start": start,
        "end": end,
        "every": every,
        "samples": [[dt.datetime.fromtimestamp(ts, dt.UTC), value] for ts, value in samples[:MAX_POINTS]],
        "truncated": len(samples) > MAX_POINTS,
    }


@router.get("/devices/{serial}/status")
async def status(serial: str, hub: HubDep, principal: Reader) -> dict[str, Any]:
    """Last seen, online, battery, signal, position and latest values of one device."""
    entry = await device_for(hub, serial, principal)
    # A standby hub (HA) consumes nothing: the active's state, as it last wrote it (every 2 s), is the truth.
    live = hub.ingest.states.get(entry.id) if hub.consumes else await hub.ingest.states.read(entry.id)
    body: dict[str, Any] = {"serial": entry.serial, "kind": entry.kind, "state": entry.state}
    if live is None:
        body.update({"online": False, "last_seen": None, "metrics": {}})
    else:
        body.update(live.as_dict())
    return body


@router.get("/ingest/dead-letters")
async def dead_letters(
    hub: HubDep,
    principal: Staff,
    device: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The newest refused uplinks with their reason and raw bytes (base64), newest first; a limited key's own only."""
    scope = Scope.of(principal)
    if not scope.limited:
        letters = hub.ingest.dead_letters.recent(limit, device)
        return {"total": hub.ingest.dead_letters.total, "items": [letter.as_dict() for letter in letters]}
    # A limited key sees the uplinks of devices in its places; one from an unknown device belongs to nobody's.
    paths = PlacePaths(hub)
    mine: list[dict[str, Any]] = []
    for letter in hub.ingest.dead_letters.recent(len(hub.ingest.dead_letters), device):
        if scope.inside(await paths.of_serial(letter.device)):
            mine.append(letter.as_dict())
    return {"total": len(mine), "items": mine[:limit]}
