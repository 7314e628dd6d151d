"""Who is calling: API keys from ``Authorization: Bearer`` or ``X-API-Key``, roles, place limits.

Routers take ``CurrentPrincipal`` (any valid key) or ``Depends(require_roles(...))``; admin passes every
role check. Place limits are checked in services with ``ensure_place_allowed`` (re-exported here).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from hub.api.deps import HubDep
from hub.db.people import ROLES
from hub.errors import AuthError, Forbidden
from provisioning.apikeys import Principal, authenticate, ensure_place_allowed, scope_clause
from provisioning.audit import Clock, utcnow

__all__ = [
    "ClockDep",
    "CurrentPrincipal",
    "Principal",
    "ensure_place_allowed",
    "get_clock",
    "get_principal",
    "presented_key",
    "require_roles",
    "scope_clause",
]

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="iothub"'}
# Declared for the OpenAPI document (clients and /docs can authorise); ``presented_key`` reads the headers.
BEARER = HTTPBearer(
    auto_error=False, scheme_name="bearerKey", description="`Authorization: Bearer hub_<id>_<secret>`"
)
API_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: hub_<id>_<secret>`"
)


def get_clock(request: Request) -> Clock:
    """The clock writes are stamped with: ``app.state.clock`` or the hub's, else UTC now."""
    clock: Clock | None = getattr(request.app.state, "clock", None)
    if clock is None:
        clock = getattr(getattr(request.app.state, "hub", None), "clock", None)
    return clock or utcnow


ClockDep = Annotated[Clock, Depends(get_clock)]


def presented_key(request: Request) -> str | None:
    """The key the request carries, from ``Authorization: Bearer`` or ``X-API-Key``."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = request.headers.get("x-api-key", "").strip()
    return value or None


def _unauthorized(message: str) -> HTTPException:
    # The problem handler keeps these headers; RFC 9110 wants the challenge on every 401.
    return HTTPException(status_code=401, detail=message, headers=CHALLENGE)


async def get_principal(
    request: Request,
    hub: HubDep,
    clock: ClockDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    _header: Annotated[str | None, Depends(API_KEY)],
) -> Principal:
    """Authenticate the request's key (401 with a Bearer challenge when missing, unknown or revoked)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    raw = presented_key(request)
    if raw is None:
        raise _unauthorized("missing API key: send Authorization: Bearer <key> or X-API-Key")
    try:
        async with hub.db.session() as session:
            principal = await authenticate(session, raw, clock)
    except Forbidden:
        raise
    except AuthError as exc:
        raise _unauthorized(exc.message) from exc
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through keys of ``roles`` (and admin), else 403."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s): {', '.join(sorted(unknown))}")
    allowed = frozenset(roles) | {"admin"}

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role} may not do this; needs {' or '.join(sorted(allowed))}")
        return principal

    return dependency
