"""The seam between cases/escalation and the notifiers: what one asks of the other.

The case side (alerts/cases*, alerts/escalation*) decides *who* is due *when* and hands
``Notification``s to a ``Notifier``; the notifier side (alerts/notifiers/, the outbox, the Twilio
webhooks) delivers them and reports back through ``CaseActions`` (a responder answered) and
``DeliveryFeedback`` (a message failed or a call went unanswered).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "CaseActions",
    "CaseView",
    "Channel",
    "DeliveryFeedback",
    "Notification",
    "NotificationKind",
    "Notifier",
]

Channel = Literal["sms", "voice", "console"]
NotificationKind = Literal["case_alert", "rating_request", "test_confirmation", "reply_ack", "budget_warning"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one person about one case step; ``idempotency_key`` makes it at most once per step and person."""

    idempotency_key: str
    kind: NotificationKind
    channel: Channel
    responder_id: int | None
    phone: str
    language: Literal["zh-CN", "en"]
    case_id: int | None
    case_code: str | None
    step_id: int | None
    due_at: dt.datetime
    # What the template needs: category, severity, place path (names), opened_at, summary, device, count...
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def caseless_sms(
        cls,
        key: str,
        kind: NotificationKind,
        responder_id: int | None,
        phone: str,
        language: str | None,
        due_at: dt.datetime,
        facts: dict[str, Any],
    ) -> Notification:
        """An SMS about no case step (a test confirmation, a budget warning), in English or else Chinese."""
        return cls(
            idempotency_key=key,
            kind=kind,
            channel="sms",
            responder_id=responder_id,
            phone=phone,
            language="en" if language == "en" else "zh-CN",
            case_id=None,
            case_code=None,
            step_id=None,
            due_at=due_at,
            facts=facts,
        )


class Notifier(Protocol):
    """Takes notifications into the outbox, inside the caller's transaction (so a case and its messages commit together)."""

    async def enqueue(self, session: AsyncSession, notifications: list[Notification]) -> int:
        """Store the notifications not stored before (by idempotency key); returns how many were new."""


@dataclass(frozen=True, slots=True)
class CaseView:
    """A case as a responder's reply needs to see it."""

    id: int
    code: str
    state: str
    category: str
    severity: str
    place_id: int | None
    household_id: int | None
    opened_at: dt.datetime


class CaseActions(Protocol):
    """What a responder can do from a phone; each raises the hub's errors (Forbidden, Conflict, NotFound)."""

    async def latest_open_case_for(self, responder_id: int) -> CaseView | None:
        """The newest open case this responder was notified about (a bare "1" reply means this one)."""

    async def accept(self, case_code: str, responder_id: int, channel: str, note: str = "") -> CaseView:
        """The responder takes the case: escalation stops."""

    async def pass_on(self, case_code: str, responder_id: int, channel: str) -> CaseView:
        """The responder cannot take it: the next escalation step is due now."""

    async def resolve(self, case_code: str, responder_id: int, channel: str, note: str = "") -> CaseView:
        """The responder handled it."""

    async def rate(self, case_code: str, score: int, phone: str) -> CaseView:
        """The reporter's or resident's satisfaction score (1-5) after resolution."""

    async def set_away(self, phone: str, away: bool) -> list[int]:
        """A resident's family sets the household away/back; returns the household ids changed."""


class DeliveryFeedback(Protocol):
    """What the notifier tells the escalation scheduler about a delivery."""

    async def delivery_failed(self, step_id: int, channel: Channel, reason: str) -> None:
        """An SMS failed or was undelivered: fall back (e.g. call) per the policy."""

    async def call_unanswered(self, step_id: int, reason: str) -> None:
        """A call was not answered / busy / failed: the next step is due now."""
