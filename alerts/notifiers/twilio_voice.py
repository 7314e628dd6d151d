"""Twilio voice calls: the TwiML (say, then gather one key) goes inline with the call."""

from __future__ import annotations

from twilio.base import values
from twilio.rest import Client

from alerts.notifiers.base import Outgoing, Sent
from alerts.notifiers.twilio_http import close_client, twilio_errors, warm_client
from alerts.notifiers.twilio_sms import parse_price
from hub.config import TwilioSettings
from hub.errors import ConfigError

__all__ = ["TwilioVoice"]


class TwilioVoice:
    """Places calls from the configured number; the status callback reports completed or not."""

    name = "voice"

    def __init__(self, client: Client, settings: TwilioSettings, *, owns_client: bool = False) -> None:
        if not settings.from_number:
            raise ConfigError("HUB_TWILIO_FROM_NUMBER", "voice calls need a from number")
        self._client = client
        self._from = settings.from_number
        self._owns_client = owns_client

    async def send(self, message: Outgoing) -> Sent:
        """Place the call; NotifierError(retryable=...) when Twilio refuses or cannot be reached."""
        if message.twiml is None:
            raise ValueError("a call needs TwiML")
        # Without StatusCallbackEvent Twilio reports only the final status, which is all the outbox needs.
        with twilio_errors(f"call #{message.outbox_id}"):
            call = await self._client.calls.create_async(
                to=message.to,
                from_=self._from,
                twiml=message.twiml,
                status_callback=message.status_callback or values.unset,
            )
        return Sent(
            sid=str(call.sid),
            status=str(call.status or "queued"),
            price=parse_price(call.price),
            price_unit=call.price_unit,
        )

    async def warm(self) -> None:
        """Open the connection to Twilio ahead of the first alarm (once per client: by its owner)."""
        if self._owns_client:
            await warm_client(self._client)

    async def close(self) -> None:
        """Close the HTTP session when this channel owns the client."""
        if self._owns_client:
            await close_client(self._client)
