"""The place hierarchy: create, read, update, move and delete, keeping each ``path`` right."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from sqlalchemy import Table, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

import hub.db.models  # noqa: F401  (every table referring to places must be known before delete)
from hub.db.base import Base
from hub.db.places import LEVELS, Place, level_index, subtree_bounds
from hub.errors import Conflict, InvalidInput, NotFound
from provisioning.audit import Clock, record, utcnow
from provisioning.outline import check_outline, explain

__all__ = [
    "EDITABLE",
    "PlaceData",
    "ancestor_ids",
    "check_parent",
    "create_place",
    "delete_place",
    "get_place",
    "list_places",
    "move_place",
    "snapshot",
    "subtree",
    "update_place",
]

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
EDITABLE = ("name", "name_en", "lat", "lon", "outline", "contacts")


class PlaceData(BaseModel):
    """One place as given by a user, an import file or the API."""

    model_config = {"extra": "forbid", "str_strip_whitespace": True}

    code: str
    level: str
    name: str = Field(min_length=1, max_length=200)
    name_en: str | None = Field(default=None, max_length=200)
    parent: str | None = None
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    outline: dict[str, Any] | None = None
    contacts: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not CODE_RE.match(value):
            raise ValueError("code must be 1-64 letters, digits, '-', '_' or '.'")
        return value

    @field_validator("level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        return value

    @field_validator("outline")
    @classmethod
    def _outline(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_outline(value)

    @model_validator(mode="after")
    def _shape(self) -> PlaceData:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        if self.name_en == "":
            self.name_en = None
        return self


def snapshot(place: Place, parent_code: str | None) -> dict[str, Any]:
    """The user-visible fields of ``place``, comparable with ``PlaceData.model_dump()``."""
    fields = {name: getattr(place, name) for name in ("code", "level", *EDITABLE)}
    return fields | {"parent": parent_code}


def ancestor_ids(path: str) -> list[int]:
    """The ids on ``path`` from the root down to the place itself."""
    return [int(part) for part in path.strip("/").split("/") if part]


def check_parent(level: str, parent: Place | None, *, field: str = "parent") -> None:
    """Enforce the hierarchy: districts are roots; every other level sits right below its parent's."""
    depth = level_index(level)
    if parent is None:
        if depth != 0:
            raise InvalidInput(f"a {level} needs a parent {LEVELS[depth - 1]}", field=field)
        return
    if depth == 0:
        raise InvalidInput("a district has no parent", field=field)
    if level_index(parent.level) != depth - 1:
        raise InvalidInput(
            f"a {level} belongs under a {LEVELS[depth - 1]}, not under {parent.level} {parent.code}",
            field=field,
        )


async def get_place(session: AsyncSession, code: str, *, field: str | None = None) -> Place:
    """The place with ``code``: NotFound, or InvalidInput naming ``field`` when it is a reference."""
    place = await session.scalar(select(Place).where(Place.code == code))
    if place is None:
        if field is not None:
            raise InvalidInput(f"no place with code {code!r}", field=field)
        raise NotFound(f"no place with code {code!r}")
    return place


async def create_place(
    session: AsyncSession, data: PlaceData, *, actor: str, channel: str, clock: Clock = utcnow
) -> Place:
    """Add one place under its parent."""
    if await session.scalar(select(Place.id).where(Place.code == data.code)) is not None:
        raise Conflict(f"a place with code {data.code!r} exists already", field="code")
    parent = await get_place(session, data.parent, field="parent") if data.parent else None
    check_parent(data.level, parent)
    now = clock()
    fields = data.model_dump(exclude={"parent"})
    place = Place(**fields, parent_id=parent.id if parent else None, path="", created_at=now, updated_at=now)
    session.add(place)
    await session.flush()
    place.path = f"{parent.path if parent else '/'}{place.id}/"
    record(session, actor, channel, "create", "place", data.code, data.model_dump(mode="json"), clock)
    return place


async def update_place(
    session: AsyncSession,
    code: str,
    changes: dict[str, Any],
    *,
    actor: str,
    channel: str,
    clock: Clock = utcnow,
) -> Place:
    """Change names, position, outline or contacts (level, code and parent are not editable here)."""
    place = await get_place(session, code)
    fixed = set(changes) - set(EDITABLE)
    if fixed:
        raise InvalidInput(f"{', '.join(sorted(fixed))} cannot be changed here", field=sorted(fixed)[0])
    parent_code = await session.scalar(select(Place.code).where(Place.id == place.parent_id))
    merged = snapshot(place, parent_code) | changes
    try:
        data = PlaceData.model_validate(merged)
    except ValidationError as exc:
        field, message = explain(exc)
        field = field or next(iter(changes), "")
        raise InvalidInput(f"{field}: {message}" if field else message, field=field or None) from exc
    before = snapshot(place, parent_code)
    for name in EDITABLE:
        setattr(place, name, getattr(data, name))
    after = snapshot(place, parent_code)
    diff = {k: after[k] for k in EDITABLE if before[k] != after[k]}
    if diff:
        place.updated_at = clock()
        record(session, actor, channel, "update", "place", code, diff, clock)
    return place


def _referring_tables() -> list[tuple[str, Any]]:
    """Every (table, column) whose foreign key points at places.id, except the parent link."""
    found = []
    for table in Base.metadata.tables.values():
        for fk in table.foreign_keys:
            if fk.column.table.name == "places" and not (
                table.name == "places" and fk.parent.name == "parent_id"
            ):
                found.append((table.name, fk.parent))
    return sorted(found, key=lambda item: item[0])


async def delete_place(
    session: AsyncSession, code: str, *, actor: str, channel: str, clock: Clock = utcnow
) -> None:
    """Delete a leaf place nothing refers to; children, devices or assignments → Conflict."""
    place = await get_place(session, code)
    children = await session.scalar(select(func.count()).where(Place.parent_id == place.id))
    if children:
        raise Conflict(f"place {code} has {children} child place(s); delete or move them first")
    for table_name, column in _referring_tables():
        table: Table = column.table
        count = await session.scalar(select(func.count()).select_from(table).where(column == place.id))
        if count:
            raise Conflict(f"place {code} is still referred to by {count} row(s) of {table_name}")
    await session.delete(place)
    record(
        session, actor, channel, "delete", "place", code, {"level": place.level, "path": place.path}, clock
    )


async def move_place(
    session: AsyncSession, code: str, new_parent: str, *, actor: str, channel: str, clock: Clock = utcnow
) -> Place:
    """Move a place and its subtree under ``new_parent``; ids (and what refers to them) are kept."""
    place = await get_place(session, code)
    parent = await get_place(session, new_parent, field="parent")
    check_parent(place.level, parent)
    old_path, new_path = place.path, f"{parent.path}{place.id}/"
    if old_path == new_path:
        return place
    old_parent = await session.scalar(select(Place.code).where(Place.id == place.parent_id))
    low, high = subtree_bounds(old_path)
    # One statement rewrites every path of the subtree: new prefix + what followed the old one.
    rewrite = literal(new_path) + func.substr(Place.path, len(old_path) + 1)
    result = await session.execute(
        update(Place)
        .where(Place.path >= low, Place.path < high)
        .values(path=rewrite)
        .execution_options(synchronize_session=False)
    )
    moved = getattr(result, "rowcount", 0)
    place.parent_id = parent.id
    place.updated_at = clock()
    await session.flush()
    await session.refresh(place)
    detail = {"from": old_parent, "to": new_parent, "places_moved": moved}
    record(session, actor, channel, "move", "place", code, detail, clock)
    return place


async def subtree(session: AsyncSession, place: Place, *, level: str | None = None) -> Sequence[Place]:
    """The place and everything below it, parents before children (one index range scan)."""
    low, high = subtree_bounds(place.path)
    query = select(Place).where(Place.path >= low, Place.path < high).order_by(Place.path)
    if level is not None:
        query = query.where(Place.level == level)
    return (await session.execute(query)).scalars().all()


async def list_places(
    session: AsyncSession,
    *,
    parent: str | None = None,
    level: str | None = None,
    search: str | None = None,
    scope: Any = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Place]:
    """Places filtered by parent code, level, name/code text and a scope clause, in path order."""
    query = select(Place).order_by(Place.path).limit(limit).offset(offset)
    if parent is not None:
        query = query.where(Place.parent_id == (await get_place(session, parent, field="parent")).id)
    if level is not None:
        query = query.where(Place.level == level)
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(
            func.lower(Place.name).like(pattern)
            | func.lower(Place.code).like(pattern)
            | func.lower(func.coalesce(Place.name_en, "")).like(pattern)
        )
    if scope is not None:
        query = query.where(scope)
    return (await session.execute(query)).scalars().all()
