"""The database component: one async engine, a session factory, migrations at start."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from hub.config import DatabaseSettings
from hub.errors import StartupError, StoreError

__all__ = ["Database"]

log = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the API read while ingest writes; foreign keys are off by default in SQLite.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class Database:
    """Owns the engine; hands out sessions; runs Alembic migrations."""

    name = "database"

    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def is_sqlite(self) -> bool:
        """Tell whether the backend is SQLite."""
        return self.settings.url.startswith("sqlite")

    @property
    def engine(self) -> AsyncEngine:
        """The running engine."""
        if self._engine is None:
            raise StoreError("database not started")
        return self._engine

    async def start(self, *, migrate: bool = True) -> None:
        """Create the engine, check the connection, and bring the schema to head."""
        url = self.settings.url
        if self.is_sqlite:
            path = url.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        if self.settings.echo:
            # Not echo=True: that gives SQLAlchemy's logger a handler of its own, past the root handler's secret
            # mask (hub/logmask.py). A level on its logger sends the statements through the root handler instead.
            logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
        self._engine = create_async_engine(url, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            await self._engine.dispose()
            self._engine = None
            raise StartupError(f"database {self.safe_url}: {exc.__class__.__name__}: {exc}") from exc
        if migrate:
            await self.upgrade()

    async def upgrade(self, revision: str = "head") -> None:
        """Run Alembic migrations up to ``revision`` on this engine."""
        from hub.db.migrate import run_upgrade

        async with self.engine.begin() as conn:
            await conn.run_sync(run_upgrade, revision)

    async def downgrade(self, revision: str) -> None:
        """Run Alembic migrations down to ``revision``."""
        from hub.db.migrate import run_downgrade

        async with self.engine.begin() as conn:
            await conn.run_sync(run_downgrade, revision)

    async def stop(self) -> None:
        """Close every pooled connection."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def health(self) -> tuple[bool, str]:
        """Answer whether a trivial query succeeds."""
        if self._engine is None:
            return False, "not started"
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            return False, f"{exc.__class__.__name__}: {exc}"[:200]
        return True, "ok"

    @property
    def safe_url(self) -> str:
        """The URL without its password."""
        from sqlalchemy.engine import make_url

        return make_url(self.settings.url).render_as_string(hide_password=True)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed on success and rolled back on error."""
        if self._sessions is None:
            raise StoreError("database not started")
        async with self._sessions() as session, session.begin():
            yield session
