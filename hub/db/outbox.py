"""The notification outbox: every SMS and call is a row before it is a request to Twilio."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db.base import Base

__all__ = ["FINAL_STATUSES", "IN_FLIGHT_STATUSES", "OutboxMessage"]

# A row in one of these has been handed to Twilio (or settled otherwise) and is never sent again.
FINAL_STATUSES = (
    "delivered",
    "failed",
    "undelivered",
    "completed",
    "no-answer",
    "busy",
    "canceled",
    "suppressed",
    "unknown",
    "parked",
)
# Handed to Twilio (or about to be); only a status callback moves these on.
IN_FLIGHT_STATUSES = ("sending", "queued", "accepted", "sent", "ringing", "in-progress", "initiated")


class OutboxMessage(Base):
    """One message (SMS, call or console line) to one person about one case step."""

    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_messages_phone_sent", "phone", "sent_at"),
        Index("ix_outbox_messages_street_sent", "street_id", "sent_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # "<case>:<step>:<responder>:<channel>" or similar from the case side; UNIQUE = at most once.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    # No foreign keys to cases/places: the outbox outlives what it talks about (and keeps its history).
    case_id: Mapped[int | None] = mapped_column(Integer, index=True)
    case_code: Mapped[str | None] = mapped_column(String(32))
    step_id: Mapped[int | None] = mapped_column(Integer)
    responder_id: Mapped[int | None] = mapped_column(
        ForeignKey("responders.id", ondelete="SET NULL"), index=True
    )
    phone: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8))
    street_id: Mapped[int | None] = mapped_column(Integer)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # pending → sending → queued/sent/... → delivered | failed | undelivered | completed | no-answer | busy;
    # suppressed (opt-out, budget), unknown (lost between send and record) and parked (failed for the hub's own reasons
    # after bounded retries; an operator's retry makes it pending again) are final too.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(200))
    # The row whose request carried this one (bundling); None for a leader or an unbundled row.
    bundle_id: Mapped[int | None] = mapped_column(Integer, index=True)
    body: Mapped[str | None] = mapped_column(Text)
    twilio_sid: Mapped[str | None] = mapped_column(String(64), index=True)
    price: Mapped[float | None] = mapped_column(Float)
    price_unit: Mapped[str | None] = mapped_column(String(8))
    cost_estimate: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[dt.datetime]
    next_attempt_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]
    claimed_at: Mapped[dt.datetime | None]
    sent_at: Mapped[dt.datetime | None]
    settled_at: Mapped[dt.datetime | None]
    # A keypress or reply that answered this message ("1", "2", "rated:4").
    answer: Mapped[str | None] = mapped_column(String(32))
    # "due" while the escalation side still has to hear of a failure; "done" once told; "parked" when telling it
    # kept failing (an operator's retry makes it "due" again).
    feedback: Mapped[str | None] = mapped_column(String(8))
