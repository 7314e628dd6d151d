"""Device registry tables: devices, their lifecycle events, claim codes and secrets."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.db.base import Base

__all__ = ["Device", "DeviceClaim", "DeviceEvent", "DeviceSecret"]


class Device(Base):
    """One physical device: identity, where it is (household or wearer), and its lifecycle state."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    imei: Mapped[str | None] = mapped_column(String(20), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(64), default="")
    firmware: Mapped[str] = mapped_column(String(32), default="")
    transport: Mapped[str] = mapped_column(String(8), default="mqtt")
    # A household for fixed devices; the grid worker who wears it for body-cams.
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="RESTRICT"), index=True)
    responder_id: Mapped[int | None] = mapped_column(
        ForeignKey("responders.id", ondelete="SET NULL"), index=True
    )
    position: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), default="registered")
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    # Test mode: set by a technician, expires by itself when the clock passes test_until.
    test_until: Mapped[dt.datetime | None]
    test_by: Mapped[str | None] = mapped_column(String(120))
    # The state to return to when test mode ends.
    test_from: Mapped[str | None] = mapped_column(String(16))


class DeviceEvent(Base):
    """One lifecycle change of a device: who, when, from, to, and why."""

    __tablename__ = "device_events"
    __table_args__ = (Index("ix_device_events_device_id_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(120))
    channel: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")


class DeviceClaim(Base):
    """A factory claim code for a pre-registered device, kept only as a keyed hash."""

    __tablename__ = "device_claims"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    batch: Mapped[str] = mapped_column(String(64), default="", index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    used_by: Mapped[str | None] = mapped_column(String(120))


class DeviceSecret(Base):
    """A device's current secrets: MQTT password hash; PSK and OSCORE keys sealed with the hub key."""

    __tablename__ = "device_secrets"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    generation: Mapped[int] = mapped_column(default=1)
    mqtt_hash: Mapped[str] = mapped_column(String(200))
    psk_sealed: Mapped[str | None] = mapped_column(String(200))
    oscore_sealed: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
