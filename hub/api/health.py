"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from hub.api.deps import HubDep
from hub.logmask import Masker

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        503: {"description": "a component is not ready (the same body)", "content": {"application/json": {}}}
    },
)
async def readyz(hub: HubDep, request: Request) -> JSONResponse:
    """Every component with its state; 503 when one is not ready (reasons pass the secret mask)."""
    masker: Masker = getattr(request.app.state, "masker", None) or Masker()
    results = await hub.lifecycle.health()
    for result in results:
        hub.metrics.component_up.labels(result.name).set(1 if result.ok else 0)
    ready = all(r.ok for r in results)
    body = {
        "status": "ready" if ready else "not ready",
        "components": {r.name: {"ok": r.ok, "detail": masker(r.detail)} for r in results},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(hub: HubDep, request: Request) -> Response:
    """Prometheus text format."""
    return Response(hub.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
