"""The place hierarchy: district → street → community → grid → building → household."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db.base import Base

__all__ = ["LEVELS", "PATH_TYPE", "Place", "level_index", "subtree_bounds"]

# Top to bottom; a child's level is the next one after its parent's.
LEVELS = ("district", "street", "community", "grid", "building", "household")

# Byte order on PostgreSQL whatever the database's collation, so a subtree is one index range scan
# (a linguistic collation would ignore the "/" separators); SQLite compares bytes already.
PATH_TYPE = String(255).with_variant(String(255, collation="C"), "postgresql")


def level_index(level: str) -> int:
    """The depth of ``level`` (district is 0); ValueError for an unknown level."""
    return LEVELS.index(level)


def subtree_bounds(path: str) -> tuple[str, str]:
    """The half-open range [low, high) of paths under ``path`` (itself included)."""
    # "/" is followed by "0" in byte order, so "/1/5/" <= p < "/1/50" holds exactly the "/1/5/..." paths.
    return path, path[:-1] + chr(ord(path[-1]) + 1)


class Place(Base):
    """One node of the hierarchy; ``path`` is the chain of ids from the root, e.g. "/1/5/19/"."""

    __tablename__ = "places"
    __table_args__ = (
        CheckConstraint(
            "level IN ('district', 'street', 'community', 'grid', 'building', 'household')",
            name="level",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    level: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str | None] = mapped_column(String(200))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="RESTRICT"), index=True)
    path: Mapped[str] = mapped_column(PATH_TYPE, index=True)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    outline: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
