"""Work the hub could not do after bounded retries (an alert, a message), kept for an operator to see and retry."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db.base import Base

__all__ = ["PARKED_KINDS", "ParkedItem"]

# alert: an alert the case path could not turn into a case; message: an outbox row the worker could not send;
# feedback: a failed message the escalation could not be told of.
PARKED_KINDS = ("alert", "message", "feedback")


class ParkedItem(Base):
    """One parked piece of work: what it was, why it failed, and whether an operator's retry settled it."""

    __tablename__ = "parked_items"
    __table_args__ = (Index("ix_parked_items_state_kind", "state", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # The alert's fingerprint, or the outbox row's id.
    ref: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(200))
    # Enough to do the work again (the alert itself; the outbox id).
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    # parked → done (a retry succeeded); a retry that fails again leaves it parked with the new error.
    state: Mapped[str] = mapped_column(String(16), default="parked")
    parked_at: Mapped[dt.datetime]
    retried_at: Mapped[dt.datetime | None]
    retried_by: Mapped[str | None] = mapped_column(String(120))
