"""Record and read the audit trail: who changed what, when, and through which channel."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.base import AuditEvent
from hub.errors import InvalidInput

__all__ = ["CHANNELS", "Clock", "list_events", "record", "utcnow"]

Clock = Callable[[], dt.datetime]
CHANNELS = ("api", "cli", "web", "sms", "voice", "central", "system")


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC (the default clock)."""
    return dt.datetime.now(dt.UTC)


def record(
    session: AsyncSession,
    actor: str,
    channel: str,
    action: str,
    object_type: str,
    object_id: str | int,
    detail: dict[str, Any] | None = None,
    clock: Clock = utcnow,
) -> AuditEvent:
    """Add one audit event to ``session``; it commits (or rolls back) with the change it describes."""
    if channel not in CHANNELS:
        raise InvalidInput(f"unknown audit channel {channel!r}", field="channel")
    event = AuditEvent(
        at=clock(),
        actor=actor[:120],
        channel=channel,
        action=action[:64],
        object_type=object_type[:32],
        object_id=str(object_id)[:64],
        detail=detail or {},
    )
    session.add(event)
    return event


async def list_events(
    session: AsyncSession,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    actor: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Sequence[AuditEvent]:
    """Newest first; ``before_id`` pages back through older events."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(max(1, min(limit, 1000)))
    if object_type is not None:
        query = query.where(AuditEvent.object_type == object_type)
    if object_id is not None:
        query = query.where(AuditEvent.object_id == object_id)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return (await session.execute(query)).scalars().all()
