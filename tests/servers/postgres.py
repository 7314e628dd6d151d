"""The machine's PostgreSQL (127.0.0.1:5432, trust auth): started if stopped, one throw-away database."""

from __future__ import annotations

import asyncio
import secrets
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints

from hub.errors import StartupError, StoreError

from ._process import wait_until

__all__ = ["PostgresDatabase", "ensure_postgres_running"]

HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"
_READY_TIMEOUT_S = 60.0


def _accepts_connections() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


def ensure_postgres_running() -> None:
    """Start the local cluster with pg_ctlcluster unless it already listens on 5432."""
    if _accepts_connections():
        return
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*"))
    if not versions:
        raise StartupError("postgresql: not listening on 5432 and no cluster under /etc/postgresql")
    argv = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StartupError(f"postgresql: {' '.join(argv)} failed: {exc}") from exc
    if done.returncode != 0:
        raise StartupError(f"postgresql: {' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    wait_until(_accepts_connections, timeout=_READY_TIMEOUT_S, what="postgresql")


def _run(statement: str) -> None:
    """Run one statement on the ``postgres`` database, in a thread so no event loop is disturbed."""

    async def run() -> None:
        conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, database="postgres", timeout=30)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pool.submit(asyncio.run, run()).result()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"postgresql: {statement!r} failed: {exc}") from exc


class PostgresDatabase:
    """A database ``iothub_<random>`` created on enter and dropped (forcibly) on exit."""

    def __init__(self, prefix: str = "iothub") -> None:
        self.name = f"{prefix}_{secrets.token_hex(6)}"
        self.created = False

    @property
    def dsn(self) -> str:
        """Return a libpq/asyncpg DSN of the database."""
        return f"postgresql://{USER}@{HOST}:{PORT}/{self.name}"

    @property
    def asyncpg_url(self) -> str:
        """Return the SQLAlchemy URL of the database (asyncpg driver)."""
        return f"postgresql+asyncpg://{USER}@{HOST}:{PORT}/{self.name}"

    def create(self) -> None:
        """Make sure the server runs, then create the database."""
        ensure_postgres_running()
        try:
            _run(f'CREATE DATABASE "{self.name}"')
        except StoreError as exc:
            raise StartupError(exc.message) from exc
        self.created = True

    def drop(self) -> None:
        """Drop the database, closing connections tests left open."""
        if self.created:
            _run(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False

    def __enter__(self) -> Self:
        self.create()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.drop()
