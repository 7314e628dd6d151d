"""The leader lease: a PostgreSQL advisory lock held in an open transaction on a dedicated connection.

PostgreSQL grants the lock to one session at a time and drops it the moment that session ends: when the
holder's process dies (its socket closes), when the server ends the session because it said nothing for
``lease`` seconds (``idle_in_transaction_session_timeout``: a paused, hung or cut-off holder), or when
the server restarts. The holder cannot learn of the last two at once, so it bounds its own belief: it
counts itself the leader only until ``lease`` seconds after the start of its last heartbeat that the
server answered (on CLOCK_BOOTTIME, which keeps counting while the process is stopped or the machine
sleeps). A node that takes the lock waits ``lease`` seconds before it consumes anything, by which time
the previous holder has stopped (docs/operations.md, "Leadership and fencing").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
from sqlalchemy.engine import make_url

from hub.errors import StoreError

__all__ = ["LEASE_KEY", "LeaderLease", "asyncpg_dsn", "boottime"]

log = logging.getLogger(__name__)
# The advisory lock's key ("iothub" in ASCII); advisory locks are per database.
LEASE_KEY = 0x696F74687562
APPLICATION = "iothub-ha:"


def boottime() -> float:
    """Seconds on a clock that never jumps and keeps counting through SIGSTOP and suspend."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy ``postgresql+asyncpg://`` URL as a libpq DSN asyncpg takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class LeaderLease:
    """Take, keep and check the lock; ``valid()`` is the fence every consumer asks before it acts."""

    def __init__(
        self,
        url: str,
        node: str,
        *,
        lease: float,
        key: int = LEASE_KEY,
        clock: Callable[[], float] = boottime,
        connect_timeout: float = 5.0,
    ) -> None:
        self.dsn = asyncpg_dsn(url)
        self.node = node
        self.lease = lease
        self.key = key
        self.clock = clock
        self.connect_timeout = connect_timeout
        self.valid_until = float("-inf")
        self.held = False
        self.last_error: str | None = None
        self._conn: Any = None
        self._lost = asyncio.Event()

    @property
    def lost(self) -> asyncio.Event:
        """Set when the lock connection ended while the lock was held."""
        return self._lost

    def valid(self) -> bool:
        """Whether this node may act as the leader now (the lock is held and was confirmed recently)."""
        return self.held and self.clock() < self.valid_until

    def remaining(self) -> float:
        """Seconds left before the fence, if no heartbeat succeeds meanwhile."""
        return self.valid_until - self.clock() if self.held else 0.0

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        settings = {
            "application_name": (APPLICATION + self.node)[:63],
            # A holder that says nothing for a lease loses its session, and with it the lock.
            "idle_in_transaction_session_timeout": str(int(self.lease * 1000)),
        }
        try:
            self._conn = await asyncpg.connect(
                self.dsn, timeout=self.connect_timeout, server_settings=settings
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise StoreError(f"leader lease: cannot connect to PostgreSQL: {exc}") from exc
        self._conn.add_termination_listener(self._terminated)
        return self._conn

    def _terminated(self, _conn: Any) -> None:
        if self.held:
            self.held = False
            self._lost.set()

    async def try_acquire(self) -> bool:
        """One attempt; True when this node now holds the lock (its transaction stays open)."""
        if self.held:
            return True
        started = self.clock()
        try:
            conn = await self._connection()
            async with asyncio.timeout(self.lease):
                await conn.execute("BEGIN")
                # The simple query protocol (no parameters): its portal is dropped after the statement, so
                # the open transaction keeps no snapshot and holds back no VACUUM.
                status = await conn.execute(f"SELECT 1 WHERE pg_try_advisory_xact_lock({int(self.key)})")
                got = bool(status == "SELECT 1")
                if not got:
                    await conn.execute("ROLLBACK")  # a standby is never idle in a transaction
        except StoreError as exc:
            self.last_error = exc.message
            return False
        except Exception as exc:  # a failed attempt; the next poll tries a new connection
            self.last_error = f"{type(exc).__name__}: {exc}"
            await self._drop()
            return False
        self.last_error = None
        if got:
            self.held, self.valid_until = True, started + self.lease
            self._lost.clear()
            log.info("leader lease: %s holds the lock", self.node)
        return got

    async def heartbeat(self) -> bool:
        """Tell the server this holder lives (it resets the idle timer); False when the lock is gone."""
        if not self.held:
            return False
        if not self.valid():
            return self._fail("the lease ran out before a heartbeat confirmed it")
        started = self.clock()
        try:
            async with asyncio.timeout(self.remaining()):
                await self._conn.execute("SELECT 1")
        except Exception as exc:  # whatever broke the connection, the lock is not confirmed
            return self._fail(f"heartbeat failed: {type(exc).__name__}: {exc}")
        if self.held:
            self.valid_until = started + self.lease
        return self.held

    def _fail(self, reason: str) -> bool:
        self.last_error, self.held = reason, False
        self._lost.set()
        return False

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def release(self) -> None:
        """Close the lock connection: the server rolls the transaction back and frees the lock at once."""
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()
