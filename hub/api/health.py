"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from hub.api.deps import HubDep
from hub.logmask import Masker

if TYPE_CHECKING:
    from hub.app import Hub

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


def _calendar_warning(hub: Hub) -> str | None:
    """The working-day calendar's warning (and its gauge): deadlines that rest on estimated holiday data."""
    calendar = hub.cases.config.calendar
    now = hub.clock()
    gauge = hub.metrics.workday_notice_missing
    gauge.clear()
    for year in calendar.missing_notices(now):
        gauge.labels(str(year)).set(1)
    warning: str | None = calendar.warning(now)
    return warning


async def _parked_warning(hub: Hub) -> str | None:
    """Work parked after bounded retries that an operator has not settled (and its gauge)."""
    try:
        counts = await hub.cases.parking.counts()
    except Exception as exc:  # the database is down: the database component says so already
        return f"parked work unknown: {type(exc).__name__}"
    waiting = [f"{count} {kind}{'s' if count > 1 else ''}" for kind, count in counts.items() if count]
    if not waiting:
        return None
    return f"parked after failing: {', '.join(waiting)}; see GET /api/v1/parked and retry them there"


@router.get(
    "/readyz",
    responses={
        503: {"description": "a component is not ready (the same body)", "content": {"application/json": {}}}
    },
)
async def readyz(hub: HubDep, request: Request) -> JSONResponse:
    """Every component with its state (and, with HA, this node's role and the lease holder); 503 when one is not ready.

    Warnings do not make it unready. Reasons and warnings pass the secret mask.
    """
    masker: Masker = getattr(request.app.state, "masker", None) or Masker()
    results = await hub.health()
    for result in results:
        hub.metrics.component_up.labels(result.name).set(1 if result.ok else 0)
    ready = all(r.ok for r in results)
    warnings = [w for w in (_calendar_warning(hub), await _parked_warning(hub)) if w is not None]
    body: dict[str, object] = {
        "status": "ready" if ready else "not ready",
        "components": {r.name: {"ok": r.ok, "detail": masker(r.detail)} for r in results},
        "warnings": [masker(w) for w in warnings],
    }
    if hub.ha is not None:
        # Both nodes serve the API; this says which one consumes (role) and who holds the lease.
        body["ha"] = await hub.ha.status()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(hub: HubDep, request: Request) -> Response:
    """Prometheus text format."""
    _calendar_warning(hub)
    await _parked_warning(hub)
    return Response(hub.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
