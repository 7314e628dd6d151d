"""Shared helpers (no tests): a small street of places, a responder, and a credential store."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import Database
from hub.db.people import Responder
from hub.db.places import LEVELS, Place
from provisioning.audit import Clock
from provisioning.credentials import CredentialEvents, CredentialStore, SecretBox
from provisioning.devices import Actor

__all__ = ["SECRET", "TECH", "Street", "make_store", "make_street"]

SECRET = "test-secret-key-0123456789"
TECH = Actor("tech:wang", "api")


@dataclass
class Street:
    """Codes of the places made: two grids, each with a building and two households."""

    grid1: str = "G1"
    grid2: str = "G2"
    h1: str = "H1-101"
    h2: str = "H1-102"
    h3: str = "H2-201"
    building1: str = "B1"
    wearer_id: int = 0


async def _place(
    session: AsyncSession, code: str, level: str, parent: Place | None, now: dt.datetime
) -> Place:
    place = Place(
        code=code, level=level, name=code, parent_id=parent.id if parent else None, path="", contacts=[]
    )
    place.created_at = place.updated_at = now
    session.add(place)
    await session.flush()
    place.path = (parent.path if parent else "/") + f"{place.id}/"
    await session.flush()
    return place


async def make_street(db: Database, now: dt.datetime) -> Street:
    """District → street → community → grids G1, G2 → buildings B1, B2 → households; and a grid worker."""
    async with db.session() as session:
        chain: Place | None = None
        for level in LEVELS[:3]:
            chain = await _place(session, level[:1].upper() + "0", level, chain, now)
        g1 = await _place(session, "G1", "grid", chain, now)
        g2 = await _place(session, "G2", "grid", chain, now)
        b1 = await _place(session, "B1", "building", g1, now)
        b2 = await _place(session, "B2", "building", g2, now)
        await _place(session, "H1-101", "household", b1, now)
        await _place(session, "H1-102", "household", b1, now)
        await _place(session, "H2-201", "household", b2, now)
        worker = Responder(
            name="Li", phone="+8613800000001", role="grid_worker", created_at=now, updated_at=now
        )
        session.add(worker)
        await session.flush()
        return Street(wearer_id=worker.id)


def make_store(db: Database, clock: Clock, events: CredentialEvents | None = None) -> CredentialStore:
    """A credential store sealing with the test key."""
    return CredentialStore(db, SecretBox(SECRET), events or CredentialEvents(), clock)
