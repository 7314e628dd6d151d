"""Delivery outcomes: Twilio's status callbacks, rows lost between send and record, and the feedback owed."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from alerts.contracts import Channel
from alerts.notifiers.faults import feedback_failed
from hub.db.outbox import FINAL_STATUSES, OutboxMessage
from hub.errors import NotFound
from provisioning.audit import record

if TYPE_CHECKING:
    from alerts.outbox import Outbox

__all__ = ["report_feedback", "settle_status", "sweep_lost"]

log = logging.getLogger(__name__)

# Statuses only move forward; a late "sent" never overwrites "delivered".
_RANK = {
    "sending": 0,
    "accepted": 1,
    "queued": 1,
    "initiated": 1,
    "sent": 2,
    "ringing": 2,
    "in-progress": 3,
}
SMS_FAILED = ("failed", "undelivered")
CALL_UNANSWERED = ("no-answer", "busy", "failed", "canceled")


def _moves_forward(current: str, new: str) -> bool:
    if current == "suppressed" or (new not in _RANK and new not in FINAL_STATUSES):
        return False
    if current == "unknown":  # the callback settles what the sweep could not know
        return True
    if current in FINAL_STATUSES:
        return False
    return _RANK.get(new, 9) >= _RANK.get(current, 0)


def _owes_feedback(row: OutboxMessage, status: str) -> str | None:
    """The reason the escalation must hear of, or None when this outcome needs nothing."""
    if row.step_id is None or row.feedback == "done":
        return None
    if row.channel == "voice":
        if status in CALL_UNANSWERED:
            return status
        if status == "completed" and row.answer is None:
            return "no keypress"
        return None
    return status if status in SMS_FAILED else None


async def settle_status(outbox: Outbox, outbox_id: int, params: Mapping[str, str]) -> str:
    """Apply one status callback to a row and the rows bundled with it; returns the status kept."""
    status = (params.get("MessageStatus") or params.get("CallStatus") or "").lower()
    sid = params.get("MessageSid") or params.get("CallSid")
    now = outbox.clock()
    async with outbox.db.session() as session:
        leader = await session.get(OutboxMessage, outbox_id, with_for_update=True)
        if leader is None:
            raise NotFound(f"no outbox message {outbox_id}")
        if not _moves_forward(leader.status, status):
            return leader.status
        followers = (
            await session.execute(select(OutboxMessage).where(OutboxMessage.bundle_id == leader.id))
        ).scalars()
        error = params.get("ErrorCode")
        for row in [leader, *followers]:
            reason = _owes_feedback(row, status)
            row.status = status
            row.twilio_sid = row.twilio_sid or sid
            row.sent_at = row.sent_at or now
            if status in FINAL_STATUSES:
                row.settled_at = now
            if reason is not None:
                row.feedback = "due"
                row.reason = f"{reason} (error {error})" if error else reason
        price = params.get("Price")
        if price:
            leader.price, leader.price_unit = abs(float(price)), params.get("PriceUnit") or leader.price_unit
        elif params.get("CallDuration"):
            minutes = max(1, math.ceil(int(params["CallDuration"]) / 60))
            leader.cost_estimate = minutes * outbox.policy.voice_minute_price
    outbox.outcomes.labels(leader.channel, status).inc()
    await report_feedback(outbox)
    return status


async def sweep_lost(outbox: Outbox) -> int:
    """Mark rows "sending" past the lease as "unknown" (never resent) and owe the escalation a word."""
    now = outbox.clock()
    cutoff = now - dt.timedelta(seconds=outbox.policy.sending_lease_s)
    async with outbox.db.session() as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < cutoff)
            .with_for_update(skip_locked=True)
        )
        rows: Sequence[OutboxMessage] = (await session.execute(query)).scalars().all()
        for row in rows:
            row.status, row.settled_at = "unknown", now
            row.reason = "lost between send and record; not resent"
            if row.step_id is not None and row.feedback != "done":
                row.feedback = "due"
            record(
                session,
                "outbox",
                "system",
                "notify_unknown",
                "outbox",
                row.id,
                {"claimed_at": str(row.claimed_at)},
                outbox.clock,
            )
            outbox.outcomes.labels(row.channel, "unknown").inc()
    if rows:
        log.warning("outbox: %d row(s) lost between send and record marked unknown", len(rows))
    return len(rows)


async def report_feedback(outbox: Outbox, limit: int = 100) -> int:
    """Tell ``DeliveryFeedback`` of each failure owed; each row is claimed first, so it is told once."""
    if outbox.feedback is None:
        return 0
    async with outbox.db.session() as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.feedback == "due")
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        due = (await session.execute(query)).scalars().all()
    told = 0
    for row in due:
        async with outbox.db.session() as session:
            claim = update(OutboxMessage).where(OutboxMessage.id == row.id, OutboxMessage.feedback == "due")
            if (await session.execute(claim.values(feedback="done"))).rowcount != 1:  # type: ignore[attr-defined]
                continue  # another worker or a callback took it
        reason = row.reason or row.status
        try:
            if row.channel == "voice":
                await outbox.feedback.call_unanswered(int(row.step_id or 0), reason)
            else:
                channel: Channel = "sms" if row.channel == "sms" else "console"
                await outbox.feedback.delivery_failed(int(row.step_id or 0), channel, reason)
        except Exception as exc:  # give it back: the next cycle tries again, a bounded number of times
            log.exception("delivery feedback for outbox #%s failed", row.id)
            again = "parked" if await feedback_failed(outbox, row, exc) else "due"
            async with outbox.db.session() as session:
                await session.execute(
                    update(OutboxMessage).where(or_(OutboxMessage.id == row.id)).values(feedback=again)
                )
            continue
        told += 1
    return told
