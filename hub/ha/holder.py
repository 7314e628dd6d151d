"""Who holds the leader lease, read from PostgreSQL's own lock table (any node can ask, holder or not)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from hub.db import Database
from hub.ha.lease import APPLICATION, LEASE_KEY

__all__ = ["Holder", "lease_holder"]

# A bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low 32 bits), objsubid 1.
_HOLDER = text(
    """
    SELECT a.application_name AS name, a.xact_start AS since, a.pid AS pid
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid = :high AND l.objid = :low
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    """
)


@dataclass(frozen=True, slots=True)
class Holder:
    """The node holding the lease, since when (its lock transaction began), and its server process id."""

    node: str
    since: float
    pid: int


async def lease_holder(db: Database, key: int = LEASE_KEY) -> Holder | None:
    """The current holder, or None when the lease is free."""
    async with db.session() as session:
        row = (await session.execute(_HOLDER, {"high": key >> 32, "low": key & 0xFFFFFFFF})).first()
    if row is None:
        return None
    name = str(row.name or "")
    since = row.since.timestamp() if row.since is not None else 0.0
    return Holder(name.removeprefix(APPLICATION) or "?", since, int(row.pid))
