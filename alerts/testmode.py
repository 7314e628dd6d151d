"""Technician test mode on the case side: an alarm of a device in test confirms to the technician, no case.

The technician who started the test (``devices.test_by``, an API key's actor name) gets one
``test_confirmation`` SMS per alarm: at the phone given with the test (``notify_phone``), else at the
phone of the responder the key is linked to. With no phone at all the confirmation is only recorded:
on the device's timeline, in the audit log and (through ``TestAlarm.event``) on the live event stream.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.alert import Alert
from alerts.contracts import Notification, Notifier
from hub.db.base import AuditEvent
from hub.db.devices import Device, DeviceEvent
from hub.db.people import ApiKey, Responder
from hub.db.places import Place
from provisioning.audit import record
from provisioning.testmode import TEST_STARTED, is_in_test

__all__ = ["Technician", "TestAlarm", "device_in_test", "handle_test_alert", "technician_of"]


@dataclass(frozen=True, slots=True)
class Technician:
    """Who started the test, and where the confirmation goes (None: nowhere, it is only recorded)."""

    actor: str
    phone: str | None
    language: str
    responder_id: int | None = None


@dataclass(frozen=True, slots=True)
class TestAlarm:
    """One alarm of a device in test, as recorded and announced."""

    device_id: int
    serial: str
    alert: str
    category: str
    technician: str
    phone: str | None
    at: dt.datetime
    notified: bool

    def event(self) -> dict[str, Any]:
        """The live-stream event (``type: test_alarm``)."""
        return {
            "type": "test_alarm",
            "device_id": self.device_id,
            "serial": self.serial,
            "alert": self.alert,
            "category": self.category,
            "technician": self.technician,
            "phone": self.phone,
            "notified": self.notified,
            "at": self.at.isoformat(),
        }


async def device_in_test(session: AsyncSession, alert: Alert, now: dt.datetime) -> Device | None:
    """The alert's device when it is in test at ``now`` and the alert fires (a clearing alert passes on)."""
    if alert.device_id is None or not alert.firing:
        return None
    device = await session.get(Device, alert.device_id)
    return device if device is not None and is_in_test(device, now) else None


def _key_id(actor: str) -> str | None:
    """The API key id in an actor name ``key:<id>:<name>``."""
    kind, _, rest = actor.partition(":")
    return (rest.partition(":")[0] or None) if kind == "key" else None


async def technician_of(session: AsyncSession, device: Device) -> Technician:
    """The technician of the device's current test, with the phone their confirmations go to."""
    actor = device.test_by or "?"
    started = await session.scalar(
        select(AuditEvent)
        .where(
            AuditEvent.object_type == "device",
            AuditEvent.object_id == str(device.id),
            AuditEvent.action == TEST_STARTED,
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    phone = (started.detail or {}).get("notify_phone") if started is not None else None
    key_id = _key_id(actor)
    key = None if key_id is None else await session.get(ApiKey, key_id)
    responder = None
    if key is not None and key.responder_id is not None:
        responder = await session.get(Responder, key.responder_id)
    if phone:
        # A phone given with the test wins; the linked responder still lends its language.
        language = responder.language if responder else ("zh-CN" if phone.startswith("+86") else "en")
        return Technician(actor, str(phone), language)
    if responder is not None and responder.active:
        return Technician(actor, responder.phone, responder.language, responder.id)
    return Technician(actor, None, "zh-CN")


async def handle_test_alert(
    session: AsyncSession, device: Device, alert: Alert, now: dt.datetime, notifier: Notifier | None
) -> TestAlarm:
    """Confirm the alarm to the technician (one SMS per alarm) and record it; no case, no responder."""
    tech = await technician_of(session, device)
    place = None if device.place_id is None else await session.get(Place, device.place_id)
    facts = {
        "category": alert.category,
        "severity": alert.severity,
        "device": device.serial,
        "place": None if place is None else place.name,
        "place_id": device.place_id,
        "opened_at": now.isoformat(),
        "summary": dict(alert.text),
    }
    notified = False
    if tech.phone is not None and notifier is not None:
        key = f"test:{device.id}:{alert.fingerprint}:{round(alert.started_at * 1000)}"
        note = Notification.caseless_sms(
            key, "test_confirmation", tech.responder_id, tech.phone, tech.language, now, facts
        )
        await notifier.enqueue(session, [note])  # a repeat of the same alarm adds nothing
        notified = True
    where = f" to {tech.phone}" if notified else " (no phone to confirm to)"
    session.add(
        DeviceEvent(
            device_id=device.id,
            at=now,
            actor=f"rule:{alert.name}"[:120],
            channel="system",
            from_state="test",
            to_state="test",
            note=f"test alarm received: {alert.name} ({alert.category}); confirmed{where}",
        )
    )
    detail = {"alert": alert.name, "category": alert.category, "technician": tech.actor, "phone": tech.phone}
    record(session, f"rule:{alert.name}", "system", "test_alarm", "device", device.id, detail, lambda: now)
    return TestAlarm(
        device.id, device.serial, alert.name, alert.category, tech.actor, tech.phone, now, notified
    )
