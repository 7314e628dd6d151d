"""The database component and its migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select

import hub.db.models  # noqa: F401
from hub.config import DatabaseSettings
from hub.db import Base, Database
from hub.db.base import AuditEvent
from hub.db.migrate import current_revision, head_revision
from hub.errors import StartupError


async def test_migrations_reach_head_and_match_models(db: Database) -> None:
    """After start the schema is at head and no model differs from it."""
    async with db.engine.connect() as conn:
        revision = await conn.run_sync(current_revision)
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert revision == head_revision()
    assert diff == [], f"models differ from migrations: {diff}"


async def test_migration_round_trip(db: Database) -> None:
    """Down to base removes every table; up again restores them."""
    await db.downgrade("base")
    async with db.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(tables) <= {"alembic_version"}
    await db.upgrade()
    async with db.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    assert set(Base.metadata.tables) <= set(tables)


async def test_session_commits_and_rolls_back(db: Database) -> None:
    """A session commits on success, rolls back on error, and keeps times in UTC."""
    at = dt.datetime(2026, 1, 2, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    async with db.session() as s:
        s.add(AuditEvent(at=at, actor="t", channel="api", action="x", object_type="o", object_id="1"))
    with pytest.raises(RuntimeError):
        async with db.session() as s:
            s.add(AuditEvent(at=at, actor="t", channel="api", action="y", object_type="o", object_id="2"))
            raise RuntimeError("boom")
    async with db.session() as s:
        rows = (await s.execute(select(AuditEvent))).scalars().all()
        count = await s.scalar(select(func.count()).select_from(AuditEvent))
    assert count == 1
    assert rows[0].at == at and rows[0].at.tzinfo is not None
    assert rows[0].at.utcoffset() == dt.timedelta(0)


async def test_health_reports_a_stopped_database(db: Database) -> None:
    """Health is ok while started and says why not after stop."""
    assert (await db.health())[0] is True
    await db.stop()
    ok, detail = await db.health()
    assert ok is False and detail == "not started"


async def test_unreachable_postgres_is_a_startup_error() -> None:
    """A server that does not answer gives a StartupError naming the URL without its password."""
    # A bound socket that does not listen: connections to its port are refused, and no one else can take it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        database = Database(DatabaseSettings(url=f"postgresql+asyncpg://u:pw@127.0.0.1:{port}/none"))
        with pytest.raises(StartupError) as info:
            await database.start()
    assert f"127.0.0.1:{port}" in info.value.message
    assert "pw" not in info.value.message
