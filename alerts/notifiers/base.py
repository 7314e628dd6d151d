"""What every channel (Twilio SMS, Twilio voice, console) takes and gives back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["ChannelSender", "Outgoing", "Sent"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One request to a channel: an SMS text, or a call's TwiML (``body`` is then what it says)."""

    outbox_id: int
    to: str
    body: str
    twiml: str | None = None
    status_callback: str | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """What the channel answered: its id for the message and the first status."""

    sid: str
    status: str
    price: float | None = None
    price_unit: str | None = None


class ChannelSender(Protocol):
    """Delivers one message; raises ``NotifierError(retryable=...)`` when it cannot."""

    name: str

    async def send(self, message: Outgoing) -> Sent:
        """Hand the message over; return once the provider accepted it."""

    async def close(self) -> None:
        """Release connections."""
