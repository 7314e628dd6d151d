"""What the hub last heard from each device (written behind the ingest path, in batches)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db.base import Base

__all__ = ["DeviceStatus"]


class DeviceStatus(Base):
    """Last seen, last activity, online, battery, signal, position and the latest values of one device."""

    __tablename__ = "device_status"

    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True)
    last_seen: Mapped[dt.datetime | None]
    last_activity: Mapped[dt.datetime | None]
    online: Mapped[bool] = mapped_column(default=False)
    seq_highest: Mapped[int] = mapped_column(BigInteger, default=-1)
    battery: Mapped[float | None]
    rssi: Mapped[float | None]
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    accuracy: Mapped[float | None]
    last_event: Mapped[str | None] = mapped_column(String(64))
    last_event_at: Mapped[dt.datetime | None]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime]
