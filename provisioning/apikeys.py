"""API keys with roles, limited to places; who a request acts as (``Principal``).

Keys are ``hub_<id>_<secret>`` with a random 32-byte secret. Only its SHA-256 is stored: a fast hash is
safe for a high-entropy secret (nobody can guess 2**256 candidates), while argon2 exists to slow down
guessing of low-entropy human passwords and would cost ~50 ms on every request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from hub.db.people import ROLES, ApiKey, Responder, api_key_places, responder_places
from hub.db.places import Place, subtree_bounds
from hub.errors import AuthError, Conflict, Forbidden, InvalidInput, NotFound
from provisioning.audit import Clock, record, utcnow

__all__ = [
    "KEY_PREFIX",
    "ROLES",
    "KeyInfo",
    "Principal",
    "authenticate",
    "create_key",
    "ensure_place_allowed",
    "list_keys",
    "revoke_key",
    "scope_clause",
]

KEY_PREFIX = "hub"
# Roles whose keys must be limited to places: they work on site, never district-wide.
PLACE_BOUND_ROLES = ("technician", "responder")
# Refresh last_used_at at most this often, so reads do not turn into writes.
LAST_USED_RESOLUTION = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the key, its role, and the places (subtree roots) it may act in."""

    key_id: str
    name: str
    role: str
    place_ids: frozenset[int] | None
    place_paths: tuple[str, ...] = ()
    responder_id: int | None = None

    @property
    def actor(self) -> str:
        """The audit trail's name for this principal."""
        return f"key:{self.key_id}:{self.name}"[:120]

    def may_act_in(self, path: str) -> bool:
        """Tell whether the place with materialised ``path`` lies in one of this principal's subtrees."""
        if self.place_ids is None:
            return True
        return any(f"/{pid}/" in path for pid in self.place_ids)


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: never its secret."""

    key: ApiKey
    place_codes: tuple[str, ...]


def ensure_place_allowed(principal: Principal, place: Place | None) -> None:
    """Raise Forbidden unless ``place`` lies in the principal's places (None: something with no place).

    The refusal names the place by its code, as people know it, never by its id path.
    """
    if place is None:
        if principal.place_ids is not None:
            raise Forbidden(
                f"key {principal.key_id} is limited to its places and may not act on what has none"
            )
        return
    if not principal.may_act_in(place.path):
        raise Forbidden(f"key {principal.key_id} may not act in place {place.code}")


def scope_clause(
    principal: Principal, path_column: ColumnElement[str] | InstrumentedAttribute[str]
) -> ColumnElement[bool] | None:
    """A WHERE clause keeping rows whose place path is inside the principal's subtrees (None: all)."""
    if principal.place_ids is None:
        return None
    if not principal.place_paths:
        return false()
    ranges = [
        and_(path_column >= lo, path_column < hi) for lo, hi in map(subtree_bounds, principal.place_paths)
    ]
    return or_(*ranges)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _parse(raw: str) -> tuple[str, str]:
    parts = raw.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        raise AuthError("malformed API key: expected hub_<id>_<secret>")
    return parts[1], parts[2]


async def _places_by_code(session: AsyncSession, codes: Iterable[str]) -> list[Place]:
    wanted = sorted(set(codes))
    if not wanted:
        return []
    found = (await session.execute(select(Place).where(Place.code.in_(wanted)))).scalars().all()
    missing = sorted(set(wanted) - {p.code for p in found})
    if missing:
        raise InvalidInput(f"unknown place code(s): {', '.join(missing)}", field="places")
    return list(found)


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    role: str,
    places: Sequence[str] = (),
    responder_id: int | None = None,
    actor: str,
    channel: str,
    clock: Clock = utcnow,
) -> tuple[ApiKey, str]:
    """Create a key; returns it and the full key text, which is shown once and never stored."""
    name = name.strip()
    if not name or len(name) > 120:
        raise InvalidInput("name must be 1-120 characters", field="name")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if responder_id is not None and await session.get(Responder, responder_id) is None:
        raise InvalidInput(f"no responder {responder_id}", field="responder_id")
    found = await _places_by_code(session, places)
    if role in PLACE_BOUND_ROLES and not found and responder_id is None:
        raise InvalidInput(f"a {role} key must be limited to at least one place", field="places")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key = ApiKey(
        id=key_id,
        name=name,
        role=role,
        secret_sha256=_digest(secret),
        responder_id=responder_id,
        created_by=actor[:120],
        created_at=clock(),
    )
    session.add(key)
    await session.flush()
    if found:
        await session.execute(insert(api_key_places), [{"key_id": key_id, "place_id": p.id} for p in found])
    detail = {
        "name": name,
        "role": role,
        "places": sorted(p.code for p in found),
        "responder_id": responder_id,
    }
    record(session, actor, channel, "create", "api_key", key_id, detail, clock)
    return key, f"{KEY_PREFIX}_{key_id}_{secret}"


async def _principal_places(session: AsyncSession, key: ApiKey) -> list[tuple[int, str]]:
    by_key = select(Place.id, Place.path).join(api_key_places, api_key_places.c.place_id == Place.id)
    rows = [(r[0], r[1]) for r in await session.execute(by_key.where(api_key_places.c.key_id == key.id))]
    if key.responder_id is not None:
        by_responder = select(Place.id, Place.path).join(
            responder_places, responder_places.c.place_id == Place.id
        )
        query = by_responder.where(responder_places.c.responder_id == key.responder_id)
        rows += [(r[0], r[1]) for r in await session.execute(query)]
    return sorted(set(rows))


async def authenticate(session: AsyncSession, raw: str, clock: Clock = utcnow) -> Principal:
    """The principal of a presented key; AuthError if it is malformed, unknown or revoked."""
    key_id, secret = _parse(raw)
    key = await session.get(ApiKey, key_id)
    # Compare even for an unknown id, so timing does not tell which ids exist.
    stored = key.secret_sha256 if key is not None else "0" * 64
    if not hmac.compare_digest(stored, _digest(secret)) or key is None:
        raise AuthError("unknown API key")
    if key.revoked_at is not None:
        raise AuthError("revoked API key")
    if key.responder_id is not None:
        responder = await session.get(Responder, key.responder_id)
        if responder is None or not responder.active:
            raise AuthError("the responder of this API key is not active")
    now = clock()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        key.last_used_at = now
    places = await _principal_places(session, key)
    bound = key.role in PLACE_BOUND_ROLES or bool(places)
    return Principal(
        key_id=key.id,
        name=key.name,
        role=key.role,
        place_ids=frozenset(pid for pid, _ in places) if bound else None,
        place_paths=tuple(path for _, path in places),
        responder_id=key.responder_id,
    )


async def list_keys(session: AsyncSession, *, include_revoked: bool = False) -> list[KeyInfo]:
    """Every key, oldest first, with the codes of the places it is limited to."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    keys = (await session.execute(query)).scalars().all()
    links = select(api_key_places.c.key_id, Place.code).join(Place, Place.id == api_key_places.c.place_id)
    codes: dict[str, list[str]] = {}
    for key_id, code in await session.execute(links):
        codes.setdefault(key_id, []).append(code)
    return [KeyInfo(k, tuple(sorted(codes.get(k.id, ())))) for k in keys]


async def revoke_key(
    session: AsyncSession, key_id: str, *, actor: str, channel: str, clock: Clock = utcnow
) -> ApiKey:
    """Revoke a key at once; the last active admin key cannot be revoked (nobody could manage keys)."""
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}")
    if key.revoked_at is not None:
        raise Conflict(f"API key {key_id} is already revoked")
    if key.role == "admin":
        admins = select(func.count()).where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None))
        if (await session.scalar(admins)) == 1:
            raise Conflict("cannot revoke the last active admin key; create another admin key first")
    key.revoked_at = clock()
    record(session, actor, channel, "revoke", "api_key", key_id, {"name": key.name}, clock)
    return key
