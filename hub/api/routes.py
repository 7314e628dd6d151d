"""Every router the API serves, in one list."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

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
from hub.api.auth import get_principal
from hub.api.openapi import document_problems
from hub.api.textguard import refuse_unstorable_text
from hub.web import claim as claim_page

__all__ = ["ROUTERS", "include_routers"]

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    apikeys.router,
    places.router,
    responders.router,
    enrollment.router,
    devices.router,
    telemetry.router,
    commands.router,
    live.router,
    cases_api.router,
    rules_api.router,
    parked.router,
    households_api.router,
    twilio_api.router,
    claim_page.router,
)


def include_routers(app: FastAPI) -> None:
    """Mount every resource router on ``app``, each operation's problem answers declared."""
    for router in ROUTERS:
        document_problems(router, get_principal)
        app.include_router(router, dependencies=[Depends(refuse_unstorable_text)])
