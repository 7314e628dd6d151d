"""Twilio SMS through the SDK's async client."""

from __future__ import annotations

from twilio.base import values
from twilio.rest import Client

from alerts.notifiers.base import Outgoing, Sent
from alerts.notifiers.twilio_http import close_client, twilio_errors, warm_client
from hub.config import TwilioSettings
from hub.errors import ConfigError

__all__ = ["TwilioSms", "parse_price"]


def parse_price(raw: object) -> float | None:
    """Twilio's price string ("-0.00750") as a positive amount, or None when not reported yet."""
    if raw in (None, ""):
        return None
    try:
        return abs(float(str(raw)))
    except ValueError:
        return None


class TwilioSms:
    """Sends SMS from the configured number or messaging service."""

    name = "sms"

    def __init__(self, client: Client, settings: TwilioSettings, *, owns_client: bool = True) -> None:
        if not settings.from_number and not settings.messaging_service_sid:
            raise ConfigError("HUB_TWILIO_FROM_NUMBER", "SMS needs a from number or a messaging service SID")
        self._client = client
        self._from = settings.from_number
        self._service = settings.messaging_service_sid
        self._owns_client = owns_client

    async def send(self, message: Outgoing) -> Sent:
        """Create the message; NotifierError(retryable=...) when Twilio refuses or cannot be reached."""
        with twilio_errors(f"SMS #{message.outbox_id}"):
            created = await self._client.messages.create_async(
                to=message.to,
                body=message.body,
                from_=self._from if self._service is None else values.unset,
                messaging_service_sid=self._service or values.unset,
                status_callback=message.status_callback or values.unset,
            )
        return Sent(
            sid=str(created.sid),
            status=str(created.status or "queued"),
            price=parse_price(created.price),
            price_unit=created.price_unit,
        )

    async def warm(self) -> None:
        """Open the connection to Twilio ahead of the first alarm (once per client: by its owner)."""
        if self._owns_client:
            await warm_client(self._client)

    async def close(self) -> None:
        """Close the HTTP session when this channel owns the client."""
        if self._owns_client:
            await close_client(self._client)
