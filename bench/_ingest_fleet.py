"""The bench fleet: a street of households with devices enrolled for real, and their Mosquitto accounts."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from hub.config import DatabaseSettings
from hub.db import Database
from provisioning.credentials import CredentialEvents, CredentialStore, SecretBox
from provisioning.devices import Actor
from provisioning.enroll import DeviceSpec, enroll_direct
from provisioning.mosquitto_export import export_mosquitto
from provisioning.places import PlaceData, create_place

__all__ = ["HUB_USER", "SECRET_KEY", "Fleet", "enroll_fleet"]

SECRET_KEY = "bench-ingest-secret-key-not-for-production"
HUB_USER = "iothub"
ACTOR = Actor("bench", "cli")
# What a household of the street has (DESIGN.md §7); body-cams belong to grid workers, not households.
KINDS = ("smoke", "smoke", "door", "smoke", "door", "panic_button", "door", "smoke")
PER_HOUSEHOLD = 4


@dataclass
class Fleet:
    """Where the registry is, each device's (serial, kind, password), and the Mosquitto files."""

    database_url: str
    devices: list[tuple[str, str, str]]
    mosquitto_dir: Path
    hub_password: str


async def _places(db: Database, households: int) -> list[str]:
    codes = []
    async with db.session() as session:
        parent: str | None = None
        for level in ("district", "street", "community", "grid", "building"):
            code = f"BI-{level}"
            data = PlaceData(code=code, level=level, name=code, parent=parent)
            await create_place(session, data, actor="bench", channel="cli")
            parent = code
        for n in range(households):
            code = f"BI-H{n:05d}"
            data = PlaceData(code=code, level="household", name=code, parent=parent)
            await create_place(session, data, actor="bench", channel="cli")
            codes.append(code)
    return codes


async def enroll_fleet(root: Path, devices: int) -> Fleet:
    """Enroll ``devices`` MQTT devices into a fresh SQLite registry and export Mosquitto's files.

    The export issues each device a new password (the registry keeps only argon2 hashes, which Mosquitto
    cannot read): that password then holds on both brokers, argon2 in the hub, PBKDF2 in Mosquitto.
    """
    url = f"sqlite+aiosqlite:///{root}/registry.db"
    db = Database(DatabaseSettings(url=url))
    await db.start()
    try:
        store = CredentialStore(db, SecretBox(SECRET_KEY), CredentialEvents())
        households = await _places(db, -(-devices // PER_HOUSEHOLD))
        kinds: dict[str, str] = {}
        async with db.session() as session:
            for n in range(devices):
                serial, kind = f"BI-{n:05d}", KINDS[n % len(KINDS)]
                spec = DeviceSpec(serial=serial, kind=kind, household=households[n // PER_HOUSEHOLD])
                await enroll_direct(session, spec, actor=ACTOR, store=store)
                kinds[serial] = kind
        hub_password = secrets.token_urlsafe(16)
        out = root / "mosquitto-files"
        out.mkdir()
        result = await export_mosquitto(
            db, store, out, hub_user=HUB_USER, hub_password=hub_password, issue=True, actor="bench"
        )
    finally:
        await db.stop()
    fleet = [(serial, kinds[serial], password) for serial, password in sorted(result.issued.items())]
    if len(fleet) != devices:
        raise SystemExit(f"enrolled {devices} devices but the export issued {len(fleet)} passwords")
    return Fleet(url, fleet, out, hub_password)
