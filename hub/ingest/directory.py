"""The device directory: what ingest needs to know of each device, cached in memory by serial."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select

from drivers.base import Driver
from hub.db import Database
from hub.db.devices import Device, DeviceSecret

__all__ = ["ACCEPTING_STATES", "DeviceDirectory", "DeviceEntry"]

# A registered device has no secrets yet; a decommissioned one must stay silent.
ACCEPTING_STATES = frozenset({"claimed", "active", "test", "maintenance"})


@dataclass(slots=True)
class DeviceEntry:
    """One device as ingest sees it."""

    id: int
    serial: str
    kind: str
    driver: Driver
    place_id: int | None
    responder_id: int | None
    state: str
    transport: str
    mqtt_hash: str | None
    revoked: bool
    generation: int
    test_until: dt.datetime | None

    @property
    def accepting(self) -> bool:
        """Whether uplinks from this device are taken at all."""
        return not self.revoked and self.state in ACCEPTING_STATES


class DeviceDirectory:
    """Serial → DeviceEntry, loaded at start, refreshed on change, unknown serials remembered briefly."""

    def __init__(
        self,
        db: Database,
        drivers: Mapping[str, Driver],
        *,
        negative_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.drivers = drivers
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._by_serial: dict[str, DeviceEntry] = {}
        self._by_id: dict[int, DeviceEntry] = {}
        self._unknown: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._by_serial)

    def get(self, serial: str) -> DeviceEntry | None:
        """The cached entry, without I/O."""
        return self._by_serial.get(serial)

    def may_exist(self, serial: str) -> bool:
        """False while ``serial`` is remembered as unknown (a lookup would not ask the database)."""
        seen = self._unknown.get(serial)
        return seen is None or self._clock() - seen >= self.negative_ttl

    def by_id(self, device_id: int) -> DeviceEntry | None:
        """The cached entry of a registry id."""
        return self._by_id.get(device_id)

    def entries(self) -> list[DeviceEntry]:
        """Every cached entry."""
        return list(self._by_serial.values())

    async def load_all(self) -> int:
        """Load every device of the registry; returns how many."""
        rows = await self._select(None)
        self._by_serial.clear()
        self._by_id.clear()
        for entry in rows:
            self._put(entry)
        return len(rows)

    async def lookup(self, serial: str) -> DeviceEntry | None:
        """The entry for ``serial``, from the cache or the database; None when unknown."""
        entry = self._by_serial.get(serial)
        if entry is not None:
            return entry
        if not self.may_exist(serial):
            return None
        now = self._clock()
        rows = await self._select(serial=serial)
        if not rows:
            if len(self._unknown) > 100_000:
                self._unknown.clear()
            self._unknown[serial] = now
            return None
        self._put(rows[0])
        return rows[0]

    async def refresh(self, device_id: int) -> DeviceEntry | None:
        """Reload one device after a change (enrollment, rotation, revocation, state)."""
        rows = await self._select(device_id=device_id)
        old = self._by_id.pop(device_id, None)
        if old is not None:
            self._by_serial.pop(old.serial, None)
        if not rows:
            return None
        self._put(rows[0])
        return rows[0]

    def _put(self, entry: DeviceEntry) -> None:
        self._by_serial[entry.serial] = entry
        self._by_id[entry.id] = entry
        self._unknown.pop(entry.serial, None)

    async def _select(self, device_id: int | None = None, serial: str | None = None) -> list[DeviceEntry]:
        query = select(Device, DeviceSecret).outerjoin(DeviceSecret, DeviceSecret.device_id == Device.id)
        if device_id is not None:
            query = query.where(Device.id == device_id)
        if serial is not None:
            query = query.where(Device.serial == serial)
        async with self.db.session() as session:
            result = await session.execute(query)
            pairs = result.all()
        out = []
        for device, secret in pairs:
            driver = self.drivers.get(device.kind)
            if driver is None:
                continue
            out.append(
                DeviceEntry(
                    id=device.id,
                    serial=device.serial,
                    kind=device.kind,
                    driver=driver,
                    place_id=device.place_id,
                    responder_id=device.responder_id,
                    state=device.state,
                    transport=device.transport,
                    mqtt_hash=secret.mqtt_hash if secret else None,
                    revoked=secret is None or secret.revoked_at is not None,
                    generation=secret.generation if secret else 0,
                    test_until=device.test_until,
                )
            )
        return out
