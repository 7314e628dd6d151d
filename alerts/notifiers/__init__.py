"""Notification channels (Twilio SMS, Twilio voice, console) and the outbox that drives them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from alerts.contracts import CaseActions, DeliveryFeedback
from alerts.notifiers.base import ChannelSender, Outgoing, Sent
from alerts.notifiers.console import ConsoleChannel
from hub.config import Settings
from hub.db import Database
from hub.priority import UrgentLane
from provisioning.audit import utcnow

if TYPE_CHECKING:
    from alerts.outbox import Outbox

__all__ = ["ChannelSender", "ConsoleChannel", "Outgoing", "Sent", "build_channels", "build_outbox"]


def build_channels(settings: Settings, on_request: Callable[[str], None]) -> dict[str, ChannelSender]:
    """Twilio SMS and voice when Twilio is configured (voice needs a from number), else the console."""
    console = ConsoleChannel()
    channels: dict[str, ChannelSender] = {"sms": console, "voice": console, "console": console}
    twilio = settings.twilio
    if not twilio.configured:
        return channels
    from alerts.notifiers.twilio_http import make_client
    from alerts.notifiers.twilio_sms import TwilioSms
    from alerts.notifiers.twilio_voice import TwilioVoice

    client = make_client(twilio, on_request, twilio.policy.request_timeout_s)
    channels["sms"] = TwilioSms(client, twilio, owns_client=True)
    if twilio.from_number:
        channels["voice"] = TwilioVoice(client, twilio, owns_client=False)
    return channels


def build_outbox(
    db: Database,
    settings: Settings,
    *,
    actions: CaseActions | None = None,
    feedback: DeliveryFeedback | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    registry: CollectorRegistry | None = None,
    lane: UrgentLane | None = None,
) -> Outbox:
    """The outbox with the channels the settings ask for, counting Twilio requests in ``registry``."""
    from alerts.outbox import Outbox

    outbox = Outbox(
        db, settings, {}, actions=actions, feedback=feedback, clock=clock, registry=registry, lane=lane
    )
    outbox.channels = build_channels(settings, lambda channel: outbox.requests.labels(channel).inc())
    return outbox
