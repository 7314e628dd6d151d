"""A tiny street and enrolled devices, made through the real provisioning services (for ingest tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.config import Settings
from hub.db import Database
from provisioning.credentials import CredentialEvents, CredentialStore, SecretBox
from provisioning.devices import Actor
from provisioning.enroll import DeviceSpec, Enrolled, enroll_direct
from provisioning.places import PlaceData, create_place

__all__ = ["TEST_SECRET_KEY", "Street", "build_street", "enroll"]

TEST_SECRET_KEY = "test-secret-key-for-sealing-device-keys"
ACTOR = Actor("test", "cli")


def hub_settings(database_url: str, var_dir: Path, **sections: Any) -> Settings:
    """A test hub's Settings: its database and var dir, MQTT on a free port, CoAP off, the test key; ``sections`` override."""
    options: dict[str, Any] = {"mqtt": {"port": 0}, "coap": {"enabled": False}} | sections
    return Settings(database={"url": database_url}, var_dir=var_dir, secret_key=TEST_SECRET_KEY, **options)


@dataclass
class Street:
    """Codes of the places made: one chain district → building, and its households."""

    building: str
    households: list[str] = field(default_factory=list)


async def build_street(db: Database, households: int = 2, prefix: str = "T") -> Street:
    """District → street → community → grid → building → ``households`` households."""
    chain = [("district", "D"), ("street", "S"), ("community", "C"), ("grid", "G"), ("building", "B")]
    parent: str | None = None
    async with db.session() as session:
        for level, short in chain:
            code = f"{prefix}-{short}" if parent is None else f"{parent}-{short}"
            await create_place(
                session,
                PlaceData(code=code, level=level, name=f"{level} {code}", parent=parent),
                actor="test",
                channel="cli",
            )
            parent = code
        assert parent is not None
        street = Street(building=parent)
        for n in range(1, households + 1):
            code = f"{parent}-U{n:02d}"
            await create_place(
                session,
                PlaceData(code=code, level="household", name=f"户 {n}", parent=parent),
                actor="test",
                channel="cli",
            )
            street.households.append(code)
    return street


async def enroll(
    db: Database,
    serial: str,
    kind: str,
    household: str | None,
    *,
    transport: str = "mqtt",
    events: CredentialEvents | None = None,
) -> Enrolled:
    """Enroll one device directly, as a technician would; returns its one-time secrets."""
    store = CredentialStore(db, SecretBox(TEST_SECRET_KEY), events or CredentialEvents())
    async with db.session() as session:
        enrolled = await enroll_direct(
            session,
            DeviceSpec(serial=serial, kind=kind, household=household, transport=transport),
            actor=ACTOR,
            store=store,
        )
    # After the commit, as the API does: the ingest side refreshes its directory.
    store.announce(enrolled.device.id, "enrolled")
    return enrolled
