"""Every router the API serves, in one list."""

from __future__ import annotations

from fastapi import FastAPI

from hub.api import (
    apikeys,
    commands,
    devices,
    enrollment,
    health,
    live,
    parked,
    places,
    responders,
    telemetry,
)
from hub.api import cases as cases_api
from hub.api import households as households_api
from hub.api import rules as rules_api
from hub.api import twilio as twilio_api
from hub.web import claim as claim_page

__all__ = ["include_routers"]


def include_routers(app: FastAPI) -> None:
    """Mount every resource router on ``app``."""
    app.include_router(health.router)
    app.include_router(apikeys.router)
    app.include_router(places.router)
    app.include_router(responders.router)
    app.include_router(enrollment.router)
    app.include_router(devices.router)
    app.include_router(telemetry.router)
    app.include_router(commands.router)
    app.include_router(live.router)
    app.include_router(cases_api.router)
    app.include_router(rules_api.router)
    app.include_router(parked.router)
    app.include_router(households_api.router)
    app.include_router(twilio_api.router)
    app.include_router(claim_page.router)
