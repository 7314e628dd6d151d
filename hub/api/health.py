"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hub.api.deps import HubDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(hub: HubDep) -> JSONResponse:
    """Every component with its state (and, with HA, this node's role and the lease holder); 503 when one is not ready."""
    results = await hub.health()
    for result in results:
        hub.metrics.component_up.labels(result.name).set(1 if result.ok else 0)
    ready = all(r.ok for r in results)
    body: dict[str, object] = {
        "status": "ready" if ready else "not ready",
        "components": {r.name: {"ok": r.ok, "detail": r.detail} for r in results},
    }
    if hub.ha is not None:
        # Both nodes serve the API; this says which one consumes (role) and who holds the lease.
        body["ha"] = await hub.ha.status()
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(hub: HubDep, request: Request) -> Response:
    """Prometheus text format."""
    return Response(hub.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
