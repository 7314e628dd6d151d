"""Shared fixtures: real servers (tests.servers.fixtures) and a migrated database on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hub.config import DatabaseSettings
from hub.db import Database
from tests.servers.postgres import PostgresDatabase

pytest_plugins = ["tests.servers.fixtures"]

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
        return
    with PostgresDatabase("iothub_t") as pg:
        yield pg.asyncpg_url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A started Database migrated to head, on SQLite and on PostgreSQL."""
    database = Database(DatabaseSettings(url=database_url))
    await database.start()
    try:
        yield database
    finally:
        await database.stop()
