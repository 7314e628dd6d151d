"""Writing outbox rows: facts made JSON-safe, and an INSERT that skips idempotency keys stored before."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub.db.outbox import OutboxMessage

__all__ = ["insert_ignoring_duplicates", "jsonable"]


def jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    return value


def insert_ignoring_duplicates(dialect: str) -> Any:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING, in the dialect's own construct."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(OutboxMessage).on_conflict_do_nothing(index_elements=["idempotency_key"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(OutboxMessage).on_conflict_do_nothing(index_elements=["idempotency_key"])
