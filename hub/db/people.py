"""Responders (people who answer alerts) and API keys, each tied to the places they act in."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from hub.db.base import Base

__all__ = [
    "LANGUAGES",
    "RESPONDER_ROLES",
    "ROLES",
    "ApiKey",
    "Responder",
    "api_key_places",
    "responder_places",
]

RESPONDER_ROLES = ("building_leader", "grid_worker", "community_duty", "street_command", "district")
LANGUAGES = ("zh-CN", "en")
# API key roles, most powerful first.
ROLES = ("admin", "technician", "operator", "responder", "integrator")


class Responder(Base):
    """A person who answers for places: phone in E.164, language, duty hours, SMS opt-out."""

    __tablename__ = "responders"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str] = mapped_column(String(16), unique=True)
    language: Mapped[str] = mapped_column(String(8), default="zh-CN")
    role: Mapped[str] = mapped_column(String(32), index=True)
    # [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}] in Asia/Shanghai; None = always.
    duty_hours: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    sms_opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


responder_places = Table(
    "responder_places",
    Base.metadata,
    Column("responder_id", ForeignKey("responders.id", ondelete="CASCADE"), primary_key=True),
    Column("place_id", ForeignKey("places.id", ondelete="RESTRICT"), primary_key=True, index=True),
)


class ApiKey(Base):
    """An API key ``hub_<id>_<secret>``: only a SHA-256 of the random secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    responder_id: Mapped[int | None] = mapped_column(
        ForeignKey("responders.id", ondelete="SET NULL"), index=True
    )
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


api_key_places = Table(
    "api_key_places",
    Base.metadata,
    Column("key_id", ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("place_id", ForeignKey("places.id", ondelete="RESTRICT"), primary_key=True, index=True),
)
