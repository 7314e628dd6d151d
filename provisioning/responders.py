"""Responders: validated phones, roles, places, duty hours; who answers for a place."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import ColumnElement, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.people import LANGUAGES, RESPONDER_ROLES, Responder, responder_places
from hub.db.places import Place
from hub.errors import Conflict, InvalidInput, NotFound
from provisioning.audit import Clock, record, utcnow
from provisioning.places import ancestor_ids, get_place

__all__ = [
    "SHANGHAI",
    "DutyWindow",
    "Match",
    "ResponderData",
    "create_responder",
    "get_responder",
    "list_responders",
    "normalise_phone",
    "on_duty",
    "place_codes",
    "place_refs",
    "responders_for",
    "update_responder",
]

# China has kept UTC+8 without daylight saving since 1991; a fixed offset needs no tz database.
SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def normalise_phone(raw: str) -> str:
    """E.164 from what people type: spaces, dashes, dots and brackets dropped; '00' → '+'."""
    phone = re.sub(r"[\s\-.()\u00a0]", "", raw)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not E164.match(phone):
        raise ValueError(
            "phone must be E.164: '+', country code, 8-15 digits in all (e.g. +86 138 0013 8000)"
        )
    return phone


class DutyWindow(BaseModel):
    """Weekdays (1 = Monday … 7 = Sunday) and a time range in Asia/Shanghai; end < start spans midnight."""

    model_config = {"extra": "forbid"}

    days: list[int] = Field(min_length=1)
    start: str
    end: str

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in value):
            raise ValueError("days are 1 (Monday) to 7 (Sunday)")
        return sorted(set(value))

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError("times are HH:MM, 00:00-23:59")
        return value

    def covers(self, local: dt.datetime) -> bool:
        """Tell whether this window holds the time ``local`` (an aware time is read in Shanghai time)."""
        if local.tzinfo is not None:
            local = local.astimezone(SHANGHAI)
        now = local.strftime("%H:%M")
        if self.start <= self.end:
            return local.isoweekday() in self.days and self.start <= now < self.end
        # Overnight: the part before midnight belongs to a listed day, the part after to the day after it.
        yesterday = (local.isoweekday() - 2) % 7 + 1
        return (local.isoweekday() in self.days and now >= self.start) or (
            yesterday in self.days and now < self.end
        )


class ResponderData(BaseModel):
    """A responder as given by the API or a file."""

    model_config = {"extra": "forbid", "str_strip_whitespace": True}

    name: str = Field(min_length=1, max_length=120)
    phone: str
    language: str = "zh-CN"
    role: str
    places: list[str] = Field(default_factory=list)
    duty_hours: list[DutyWindow] | None = None
    active: bool = True
    sms_opt_out: bool = False

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        return normalise_phone(value)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in RESPONDER_ROLES:
            raise ValueError(f"role must be one of {', '.join(RESPONDER_ROLES)}")
        return value


def on_duty(responder: Responder, at: dt.datetime) -> bool:
    """Tell whether ``responder`` is on duty at ``at`` (no duty hours means always)."""
    if not responder.duty_hours:
        return True
    local = at.astimezone(SHANGHAI)
    return any(DutyWindow.model_validate(w).covers(local) for w in responder.duty_hours)


async def get_responder(session: AsyncSession, responder_id: int) -> Responder:
    """The responder with ``responder_id``, or NotFound."""
    responder = await session.get(Responder, responder_id)
    if responder is None:
        raise NotFound(f"no responder {responder_id}")
    return responder


async def place_codes(session: AsyncSession, responder_id: int) -> list[str]:
    """The codes of the places a responder is assigned to."""
    query = select(Place.code).join(responder_places, responder_places.c.place_id == Place.id)
    query = query.where(responder_places.c.responder_id == responder_id).order_by(Place.code)
    return list((await session.execute(query)).scalars())


async def place_refs(session: AsyncSession, responder_ids: Iterable[int]) -> dict[int, list[tuple[str, str]]]:
    """(code, path) of every place each responder is assigned to, by responder id, codes in order."""
    query = select(responder_places.c.responder_id, Place.code, Place.path).join(
        Place, Place.id == responder_places.c.place_id
    )
    refs: dict[int, list[tuple[str, str]]] = {}
    rows = await session.execute(query.where(responder_places.c.responder_id.in_(set(responder_ids))))
    for responder_id, code, path in sorted((row[0], row[1], row[2]) for row in rows):
        refs.setdefault(responder_id, []).append((code, path))
    return refs


async def list_responders(
    session: AsyncSession,
    *,
    role: str | None = None,
    active: bool | None = None,
    scope: ColumnElement[bool] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Responder]:
    """Responders by id; ``scope`` (a clause on Place.path) keeps those assigned to a place it matches."""
    query = select(Responder).order_by(Responder.id).limit(limit).offset(offset)
    if role is not None:
        query = query.where(Responder.role == role)
    if active is not None:
        query = query.where(Responder.active.is_(active))
    if scope is not None:
        inside = select(responder_places.c.responder_id).join(Place, Place.id == responder_places.c.place_id)
        query = query.where(Responder.id.in_(inside.where(scope)))
    return (await session.execute(query)).scalars().all()


async def _assign(session: AsyncSession, responder_id: int, codes: Sequence[str]) -> None:
    places = [await get_place(session, code, field="places") for code in dict.fromkeys(codes)]
    await session.execute(delete(responder_places).where(responder_places.c.responder_id == responder_id))
    if places:
        rows = [{"responder_id": responder_id, "place_id": p.id} for p in places]
        await session.execute(insert(responder_places), rows)


async def _phone_free(session: AsyncSession, phone: str, responder_id: int | None) -> None:
    other = await session.scalar(select(Responder.id).where(Responder.phone == phone))
    if other is not None and other != responder_id:
        raise Conflict(f"phone {phone} belongs to responder {other} already", field="phone")


async def create_responder(
    session: AsyncSession, data: ResponderData, *, actor: str, channel: str, clock: Clock = utcnow
) -> Responder:
    """Add a responder and assign their places."""
    await _phone_free(session, data.phone, None)
    now = clock()
    fields = data.model_dump(exclude={"places"})
    responder = Responder(**fields, created_at=now, updated_at=now)
    session.add(responder)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent insert of the same phone
        raise Conflict(f"phone {data.phone} is taken", field="phone") from exc
    await _assign(session, responder.id, data.places)
    record(session, actor, channel, "create", "responder", responder.id, data.model_dump(mode="json"), clock)
    return responder


async def update_responder(
    session: AsyncSession,
    responder_id: int,
    changes: dict[str, Any],
    *,
    actor: str,
    channel: str,
    clock: Clock = utcnow,
) -> Responder:
    """Change some fields (``places`` replaces the assignment); deactivate with ``active: false``."""
    responder = await get_responder(session, responder_id)
    current = {k: getattr(responder, k) for k in ResponderData.model_fields if k != "places"}
    current["places"] = await place_codes(session, responder_id)
    try:
        data = ResponderData.model_validate(current | changes)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else None
        raise InvalidInput(str(first["msg"]).removeprefix("Value error, "), field=field) from exc
    await _phone_free(session, data.phone, responder_id)
    new = data.model_dump(mode="json")
    diff = {k: new[k] for k in changes if k in new}
    for name, value in data.model_dump(exclude={"places"}).items():
        setattr(responder, name, value)
    if "places" in changes:
        await _assign(session, responder_id, data.places)
    responder.updated_at = clock()
    record(session, actor, channel, "update", "responder", responder_id, diff, clock)
    return responder


@dataclass(frozen=True)
class Match:
    """A responder answering for a place, through the (ancestor) place they are assigned to."""

    responder: Responder
    via: Place
    distance: int


async def responders_for(
    session: AsyncSession,
    code: str,
    *,
    role: str | None = None,
    at: dt.datetime | None = None,
    include_inactive: bool = False,
) -> list[Match]:
    """Who answers for place ``code``: its own and its ancestors' responders, nearest first."""
    place = await get_place(session, code)
    chain = ancestor_ids(place.path)
    query = (
        select(Responder, Place)
        .join(responder_places, responder_places.c.responder_id == Responder.id)
        .join(Place, Place.id == responder_places.c.place_id)
        .where(Place.id.in_(chain))
    )
    if role is not None:
        query = query.where(Responder.role == role)
    if not include_inactive:
        query = query.where(Responder.active.is_(True))
    depth = {pid: len(chain) - 1 - i for i, pid in enumerate(chain)}
    matches = [Match(r, p, depth[p.id]) for r, p in await session.execute(query)]
    if at is not None:
        matches = [m for m in matches if on_duty(m.responder, at)]
    return sorted(matches, key=lambda m: (m.distance, m.responder.role, m.responder.id))
