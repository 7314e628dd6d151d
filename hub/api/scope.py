"""What a place-limited key may read: inside its subtrees, plus the places above them (shared, nobody else's).

A key limited to community C reads C and everything below it; the street and district above C are shown where an
object refers to them (a street-level responder answers for C too), never a sibling community or its contents.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.places import Place
from hub.errors import Forbidden
from provisioning.apikeys import Principal

__all__ = ["PlacePaths", "Scope", "refuse_limited"]


@dataclass(frozen=True)
class Scope:
    """The subtrees a principal reads; ``paths`` None means everywhere."""

    paths: tuple[str, ...] | None
    key_id: str = ""

    @classmethod
    def of(cls, principal: Principal) -> Scope:
        """The scope of ``principal``."""
        return cls(None if principal.place_ids is None else tuple(principal.place_paths), principal.key_id)

    @property
    def limited(self) -> bool:
        """Tell whether the key is limited to places."""
        return self.paths is not None

    def inside(self, path: str | None) -> bool:
        """Whether a place with materialised ``path`` (None: no place) lies in one of the subtrees."""
        if self.paths is None:
            return True
        return path is not None and any(path.startswith(root) for root in self.paths)

    def related(self, path: str | None) -> bool:
        """Inside, or above one of the subtrees (an ancestor every subtree shares with its siblings)."""
        if self.paths is None:
            return True
        return path is not None and (self.inside(path) or any(root.startswith(path) for root in self.paths))

    async def refuse(self, db: Any, what: str) -> Forbidden:
        """The 403 for ``what`` (as the caller named it) outside the key's places.

        It names the key's own places by code, never the place ``what`` lies in: that one may be another
        community's, and a refusal must not tell a limited key where things are outside its places.
        """
        codes: list[str] = []
        if self.paths:
            query = select(Place.code).where(Place.path.in_(self.paths))
            if isinstance(db, AsyncSession):  # ``db``: the request's open session, or the hub
                codes = sorted(row[0] for row in await db.execute(query))
            else:
                async with db.db.session() as session:
                    codes = sorted(row[0] for row in await session.execute(query))
        mine = f" ({', '.join(codes)})" if codes else ""
        return Forbidden(f"{what} lies outside the places of key {self.key_id}{mine}")


def refuse_limited(principal: Principal, what: str) -> None:
    """403 for a place-limited key on something that spans every place (the audit trail, the key list)."""
    if principal.place_ids is not None:
        raise Forbidden(f"{what} spans every place: read it with a key that is not limited to places")


class PlacePaths:
    """Place paths by id and devices' place paths by serial, each fetched once (one per request)."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self._paths: dict[int, str | None] = {}

    async def of_places(self, ids: Iterable[int | None]) -> dict[int, str | None]:
        """The path of each place id (None for an id that does not exist)."""
        wanted = {i for i in ids if i is not None and i not in self._paths}
        if wanted:
            async with self.hub.db.session() as session:
                rows = await session.execute(select(Place.id, Place.path).where(Place.id.in_(wanted)))
                found = {row[0]: row[1] for row in rows}
            self._paths.update({i: found.get(i) for i in wanted})
        return self._paths

    async def of_place(self, place_id: int | None) -> str | None:
        """The path of one place id."""
        if place_id is None:
            return None
        return (await self.of_places([place_id])).get(place_id)

    async def of_serial(self, serial: str) -> str | None:
        """The place path of the device with ``serial`` (None: unknown, or not placed); no I/O for the device.

        The directory holds every registered device (loaded at start, refreshed on each change): a serial it
        does not hold belongs to no place.
        """
        entry = self.hub.ingest.directory.get(serial)
        return None if entry is None else await self.of_place(entry.place_id)
