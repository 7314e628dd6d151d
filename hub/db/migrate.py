"""Alembic driven programmatically on a connection the hub already holds."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

__all__ = ["alembic_config", "current_revision", "head_revision", "run_downgrade", "run_upgrade"]

MIGRATIONS = Path(__file__).with_name("migrations")
# Two hubs starting together on one PostgreSQL (active and standby) migrate one after the other.
_MIGRATION_LOCK = 0x696F74687562 + 1


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations, bound to ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def run_upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the schema on ``connection``; on PostgreSQL one process at a time (a transaction-level lock)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), revision)


def run_downgrade(connection: Connection, revision: str) -> None:
    """Downgrade the schema on ``connection``."""
    command.downgrade(alembic_config(connection), revision)


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at."""
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
