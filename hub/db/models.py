"""Import every table module so that Base.metadata knows them all (migrations, tests)."""

from hub.db.base import AuditEvent, Base
from hub.db.cases import (
    AlertRuleRow,
    Case,
    CaseAlert,
    CaseCounter,
    CaseEvent,
    EscalationPolicyRow,
    EscalationStep,
    HouseholdAway,
)
from hub.db.devices import Device, DeviceClaim, DeviceEvent, DeviceSecret
from hub.db.outbox import OutboxMessage
from hub.db.parked import ParkedItem
from hub.db.people import ApiKey, Responder, api_key_places, responder_places
from hub.db.places import Place
from hub.db.status import DeviceStatus

__all__ = [
    "AlertRuleRow",
    "ApiKey",
    "AuditEvent",
    "Base",
    "Case",
    "CaseAlert",
    "CaseCounter",
    "CaseEvent",
    "Device",
    "DeviceClaim",
    "DeviceEvent",
    "DeviceSecret",
    "DeviceStatus",
    "EscalationPolicyRow",
    "EscalationStep",
    "HouseholdAway",
    "OutboxMessage",
    "ParkedItem",
    "Place",
    "Responder",
    "api_key_places",
    "responder_places",
]
