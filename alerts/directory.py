"""Places, responders and escalation policies in memory for the alert path, dropped on every write.

A new case used to look these up with seven statements; each costs a database round trip on the way
from a panic press to the SMS. The snapshot is dropped at the commit of any session that wrote places,
responders, their assignments or policies (session events, this process), and reloaded in the background;
until it is back, the same look-ups go to the database. Writes from other processes (a CLI import) show
in a one-row signature probed every ``probe_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session

from alerts.escalation import StepSpec, pick_policy, policy_for
from hub.db import Database
from hub.db.cases import EscalationPolicyRow
from hub.db.people import Responder, responder_places
from hub.db.places import Place
from provisioning.places import ancestor_ids
from provisioning.responders import SHANGHAI, DutyWindow

__all__ = ["Directory", "PlaceInfo", "ResponderInfo"]

log = logging.getLogger(__name__)
_WATCHED = frozenset({"places", "responders", "responder_places", "escalation_policies"})
_DIRTY = "alerts.directory.dirty"
_LIVE: weakref.WeakSet[Directory] = weakref.WeakSet()


@dataclass(frozen=True, slots=True)
class PlaceInfo:
    """What the alert path needs of a place."""

    id: int
    code: str
    level: str
    name: str
    path: str


@dataclass(frozen=True, slots=True)
class ResponderInfo:
    """An active responder assigned to one place, with duty windows parsed once."""

    id: int
    name: str
    phone: str
    language: str
    role: str
    place_id: int
    duty: tuple[DutyWindow, ...] = ()

    def on_duty(self, at: dt.datetime) -> bool:
        """Tell whether the responder is on duty at ``at`` (no windows: always)."""
        local = at.astimezone(SHANGHAI)
        return not self.duty or any(w.covers(local) for w in self.duty)


@dataclass
class _Snapshot:
    signature: tuple[Any, ...]
    places: dict[int, PlaceInfo] = field(default_factory=dict)
    assigned: dict[int, list[ResponderInfo]] = field(default_factory=dict)
    policies: list[EscalationPolicyRow] = field(default_factory=list)


def _place_columns() -> tuple[Any, ...]:
    return (Place.id, Place.code, Place.level, Place.name, Place.path)


def _responder_query() -> Any:
    cols = (Responder.id, Responder.name, Responder.phone, Responder.language, Responder.role)
    query = select(*cols, Responder.duty_hours, responder_places.c.place_id)
    query = query.join(responder_places, responder_places.c.responder_id == Responder.id)
    return query.where(Responder.active.is_(True))


def _responder(row: Any) -> ResponderInfo:
    duty = tuple(DutyWindow.model_validate(w) for w in row.duty_hours or ())
    return ResponderInfo(row.id, row.name, row.phone, row.language, row.role, row.place_id, duty)


def _signature_query() -> Any:
    """Row counts and last changes of the tables held: what a write from another process moves."""
    stats = []
    for model in (Place, Responder, EscalationPolicyRow):
        stats.append(select(func.count()).select_from(model).scalar_subquery())
        stats.append(select(func.max(model.updated_at)).scalar_subquery())
    stats.append(select(func.count()).select_from(responder_places).scalar_subquery())
    return select(*stats)


class Directory:
    """The snapshot, its background reload and probe, and look-ups that fall back to the database."""

    def __init__(self, db: Database, *, probe_s: float = 5.0, settle_s: float = 0.2) -> None:
        self.db, self.probe_s, self.settle_s = db, probe_s, settle_s
        self.loads = 0
        self._snap: _Snapshot | None = None
        self._generation = 0
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def fresh(self) -> bool:
        """Tell whether look-ups are served from memory now."""
        return self._snap is not None

    async def start(self) -> None:
        """Load the snapshot and start the reload/probe task."""
        _watch_sessions()
        _LIVE.add(self)
        await self.reload()
        self._task = asyncio.create_task(self._loop(), name="alerts-directory")

    async def stop(self) -> None:
        """Stop the task; look-ups go to the database from now on."""
        _LIVE.discard(self)
        task, self._task, self._snap = self._task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def invalidate(self) -> None:
        """Drop the snapshot (a write committed) and have it reloaded."""
        self._generation += 1
        self._snap = None
        task = self._task
        if task is not None and not task.get_loop().is_closed():  # a hub left unstopped has no loop to wake
            self._kick.set()

    async def reload(self) -> None:
        """Read everything again; kept only if no write committed meanwhile."""
        generation = self._generation
        async with self.db.session() as session:
            # The signature first: a write landing after it makes the next probe reload again.
            snap = _Snapshot(tuple((await session.execute(_signature_query())).one()))
            for row in await session.execute(select(*_place_columns())):
                snap.places[row.id] = PlaceInfo(row.id, row.code, row.level, row.name, row.path)
            for row in await session.execute(_responder_query()):
                snap.assigned.setdefault(row.place_id, []).append(_responder(row))
            snap.policies = list((await session.execute(select(EscalationPolicyRow))).scalars())
        self.loads += 1
        if generation == self._generation:
            self._snap = snap

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.probe_s)
            if self._kick.is_set():
                await asyncio.sleep(self.settle_s)  # a burst of writes (an import) reloads once
                self._kick.clear()
            try:
                snap = self._snap
                if snap is None or await self._signature() != snap.signature:
                    self._snap = None
                    await self.reload()
            except Exception:  # the task must outlive a bad reload (database hiccup, a bad row); it retries
                self._snap = None
                log.exception("directory: reload failed; look-ups go to the database")

    async def _signature(self) -> tuple[Any, ...]:
        async with self.db.session() as session:
            return tuple((await session.execute(_signature_query())).one())

    # -- Look-ups ---------------------------------------------------------------------------------

    async def chain(self, session: AsyncSession, place_id: int | None) -> list[PlaceInfo]:
        """The place and its ancestors, root first; empty for no (or an unknown) place."""
        if place_id is None:
            return []
        snap = self._snap
        if snap is not None and place_id in snap.places:
            ids = ancestor_ids(snap.places[place_id].path)
            if all(i in snap.places for i in ids):
                return [snap.places[i] for i in ids]
        path = await session.scalar(select(Place.path).where(Place.id == place_id))
        if path is None:
            return []
        ids = ancestor_ids(path)
        rows = await session.execute(select(*_place_columns()).where(Place.id.in_(ids)))
        by_id = {r.id: PlaceInfo(r.id, r.code, r.level, r.name, r.path) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    async def responders(
        self, session: AsyncSession, chain: Sequence[PlaceInfo], role: str, at: dt.datetime
    ) -> list[ResponderInfo]:
        """Active responders of ``role`` on duty at ``at`` for the chain's last place, nearest first."""
        ids = [p.id for p in chain]
        snap = self._snap
        if snap is not None:
            found = [r for i in ids for r in snap.assigned.get(i, ())]
        else:
            query = _responder_query().where(responder_places.c.place_id.in_(ids), Responder.role == role)
            found = [_responder(row) for row in await session.execute(query)]
        depth = {pid: len(ids) - 1 - i for i, pid in enumerate(ids)}
        found = sorted(found, key=lambda r: (depth[r.place_id], r.role, r.id))
        # One entry per person, through their nearest assignment.
        unique = {r.id: r for r in reversed(found) if r.role == role and r.on_duty(at)}
        return sorted(unique.values(), key=lambda r: (depth[r.place_id], r.role, r.id))

    async def steps(
        self, session: AsyncSession, path: str | None, category: str, *, urgent: bool
    ) -> tuple[StepSpec, ...]:
        """The escalation steps of the most specific policy (``escalation.policy_for``)."""
        snap = self._snap
        if snap is None:
            return await policy_for(session, path, category, urgent=urgent)
        return pick_policy(snap.policies, path, category, urgent=urgent)


def _flushed(session: Session, _context: Any) -> None:
    for obj in (*session.new, *session.dirty, *session.deleted):
        if getattr(obj, "__tablename__", None) in _WATCHED:
            session.info[_DIRTY] = True
            return


def _executed(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in _WATCHED:
            state.session.info[_DIRTY] = True


def _committed(session: Session) -> None:
    if session.info.pop(_DIRTY, False):
        for directory in list(_LIVE):
            directory.invalidate()


def _rolled_back(session: Session) -> None:
    session.info.pop(_DIRTY, None)


def _watch_sessions() -> None:
    """Listen (once per process) for writes to the tables the snapshot holds, in every session."""
    if event.contains(Session, "after_commit", _committed):
        return
    event.listen(Session, "after_flush", _flushed)
    event.listen(Session, "do_orm_execute", _executed)
    event.listen(Session, "after_commit", _committed)
    event.listen(Session, "after_rollback", _rolled_back)
