"""The leader lease on a real PostgreSQL: one holder, freed when the holder's session ends, by death or silence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg  # type: ignore[import-untyped]
import pytest

from hub.config import DatabaseSettings
from hub.db import Database
from hub.ha.holder import lease_holder
from hub.ha.lease import LeaderLease, asyncpg_dsn
from tests.ingest.test_mqtt_kit import eventually
from tests.servers.postgres import PostgresDatabase


@pytest.fixture
def pg() -> Iterator[PostgresDatabase]:
    """A throw-away PostgreSQL database (HA is PostgreSQL only: with SQLite it is refused at load)."""
    with PostgresDatabase("iothub_ha") as database:
        yield database


@pytest.fixture
async def db(pg: PostgresDatabase) -> AsyncIterator[Database]:
    """The hub's own engine on it (no schema needed: advisory locks and the server's views)."""
    database = Database(DatabaseSettings(url=pg.asyncpg_url))
    await database.start(migrate=False)
    yield database
    await database.stop()


async def admin(pg: PostgresDatabase, query: str, *args: object) -> object:
    """Run one statement on a connection of its own, as an operator would."""
    conn = await asyncpg.connect(asyncpg_dsn(pg.asyncpg_url))
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def lease(pg: PostgresDatabase, node: str, seconds: float = 5.0) -> LeaderLease:
    """A lease for ``node``."""
    return LeaderLease(pg.asyncpg_url, node, lease=seconds)


async def test_one_holder_at_a_time_and_everyone_sees_who(pg: PostgresDatabase, db: Database) -> None:
    a, b = lease(pg, "node-a"), lease(pg, "node-b")
    try:
        assert await lease_holder(db) is None
        assert await a.try_acquire() and a.valid()
        assert not await b.try_acquire() and not b.valid()
        holder = await lease_holder(db)
        assert holder is not None and holder.node == "node-a"
        # The holder sits in its open transaction; the standby left none open between its attempts.
        states = await admin(
            pg,
            "SELECT string_agg(application_name || '=' || state, ',' ORDER BY application_name) "
            "FROM pg_stat_activity WHERE application_name LIKE 'iothub-ha:%'",
        )
        assert states == "iothub-ha:node-a=idle in transaction,iothub-ha:node-b=idle"
        # A lock transaction keeps no snapshot: it does not hold back VACUUM.
        xmin = await admin(
            pg,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'iothub-ha:node-a' AND backend_xmin IS NOT NULL",
        )
        assert xmin == 0
        assert await a.heartbeat() and a.valid()
        await a.release()
        assert not a.valid()
        assert await b.try_acquire()
    finally:
        await a.release()
        await b.release()


async def test_the_lock_is_free_the_moment_the_holders_session_ends(
    pg: PostgresDatabase, db: Database
) -> None:
    """An operator (or a PostgreSQL restart) ends the holder's session: the holder learns it, the other node takes over."""
    a, b = lease(pg, "node-a"), lease(pg, "node-b")
    try:
        assert await a.try_acquire()
        holder = await lease_holder(db)
        assert holder is not None
        assert await admin(pg, "SELECT pg_terminate_backend($1)", holder.pid)
        await eventually(a.lost.is_set, "the holder hears its session end")
        assert not a.valid() and not await a.heartbeat()
        assert await b.try_acquire()
    finally:
        await a.release()
        await b.release()


async def test_a_silent_holder_loses_the_lock_after_one_lease(pg: PostgresDatabase) -> None:
    """A holder paused or cut off (no heartbeat) is ended by the server after a lease; its own clock fences it too."""
    a, b = lease(pg, "node-a", seconds=1.0), lease(pg, "node-b", seconds=1.0)
    try:
        assert await a.try_acquire()
        assert not await b.try_acquire()
        await asyncio.sleep(0.5)
        assert a.valid() and not await b.try_acquire()  # still within the lease
        await eventually(lambda: not a.valid(), "the holder's own fence", timeout=3)
        deadline = asyncio.get_running_loop().time() + 10
        while not await b.try_acquire():
            assert asyncio.get_running_loop().time() < deadline, "the server never ended the silent session"
            await asyncio.sleep(0.1)
        assert not await a.heartbeat()
    finally:
        await a.release()
        await b.release()


async def test_the_fence_counts_time_the_holder_did_not_run() -> None:
    """valid() is the start of the last confirmed heartbeat plus the lease, on an injected clock."""
    now = [100.0]
    lease_ = LeaderLease("postgresql+asyncpg://nobody@127.0.0.1:1/none", "n", lease=5.0, clock=lambda: now[0])
    lease_.held, lease_.valid_until = True, 105.0
    assert lease_.valid() and lease_.remaining() == 5.0
    now[0] = 104.999
    assert lease_.valid()
    now[0] = 105.0  # a SIGSTOP or a suspended machine: the clock ran on
    assert not lease_.valid()


async def test_an_unreachable_database_is_a_failed_attempt_not_a_crash() -> None:
    a = LeaderLease("postgresql+asyncpg://postgres@127.0.0.1:1/none", "n", lease=2.0, connect_timeout=1.0)
    assert not await a.try_acquire()
    assert a.last_error is not None and "cannot connect" in a.last_error
    await a.release()
