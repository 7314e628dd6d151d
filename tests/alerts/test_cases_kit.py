"""Shared helpers of the case tests: a settable clock, a recording notifier, a street with responders."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.alert import Alert, make_alert
from alerts.casestore import CaseConfig
from alerts.contracts import Notification
from alerts.workdays import WorkdayCalendar
from hub.db import Database
from provisioning.places import get_place
from provisioning.responders import ResponderData, create_responder
from tests.clocks import ManualClock as Clock
from tests.fleet import Street, build_street

__all__ = ["SHANGHAI", "Clock", "RecordingNotifier", "Town", "config", "fire", "make_town"]

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
ROLES_AT = {
    "building_leader": "B",
    "grid_worker": "G",
    "community_duty": "C",
    "street_command": "S",
    "district": "D",
}


class RecordingNotifier:
    """Stands for the notifier's outbox: keeps what it was given, once per idempotency key."""

    def __init__(self) -> None:
        self.sent: dict[str, Notification] = {}

    async def enqueue(self, session: AsyncSession, notifications: list[Notification]) -> int:
        new = [n for n in notifications if n.idempotency_key not in self.sent]
        for n in new:
            self.sent[n.idempotency_key] = n
        return len(new)

    def phones(self) -> list[str]:
        return [n.phone for n in self.sent.values()]


@dataclass
class Town:
    """Codes and ids of the test street, and the responder id per role."""

    street: Street
    ids: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    responders: dict[str, int] = field(default_factory=dict)
    phones: dict[str, str] = field(default_factory=dict)


async def make_town(db: Database, prefix: str = "T") -> Town:
    """District → building → two households, and one responder of each role at its level."""
    street = await build_street(db, households=2, prefix=prefix)
    town = Town(street)
    codes = {"D": f"{prefix}-D"}
    for short in ("S", "C", "G", "B"):
        codes[short] = f"{codes[list(codes)[-1]]}-{short}"
    codes["U1"], codes["U2"] = street.households
    async with db.session() as session:
        for short, code in codes.items():
            place = await get_place(session, code)
            town.ids[short], town.paths[short] = place.id, place.path
        for n, (role, short) in enumerate(ROLES_AT.items()):
            phone = f"+861380000{n:04d}"
            data = ResponderData(name=role, phone=phone, role=role, places=[codes[short]])
            responder = await create_responder(session, data, actor="test", channel="cli")
            town.responders[role], town.phones[role] = responder.id, phone
    return town


def config() -> CaseConfig:
    """Default policies on the shipped calendar."""
    return CaseConfig(calendar=WorkdayCalendar.load())


def fire(town: Town, household: str = "U1", *, serial: str = "SMK-1", name: str = "smoke_alarm") -> Alert:
    """A firing smoke alarm of one device in one household."""
    return make_alert(
        name=name,
        rule_type="event",
        severity="critical",
        category="fire",
        started_at=0.0,
        device_serial=serial,
        kind="smoke",
        place_id=town.ids[household],
        summary="smoke alarm",
    )
