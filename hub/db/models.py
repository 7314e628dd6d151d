"""Import every table module so that Base.metadata knows them all (migrations, tests)."""

from hub.db.base import AuditEvent, Base
from hub.db.devices import Device, DeviceClaim, DeviceEvent, DeviceSecret
from hub.db.people import ApiKey, Responder, api_key_places, responder_places
from hub.db.places import Place
from hub.db.status import DeviceStatus

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "Device",
    "DeviceClaim",
    "DeviceEvent",
    "DeviceSecret",
    "DeviceStatus",
    "Place",
    "Responder",
    "api_key_places",
    "responder_places",
]
