"""CoAP device keys (DTLS PSK, OSCORE) fetched from the registry on first use, cached, dropped on change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from hub.db import Database
from hub.db.devices import Device, DeviceSecret
from provisioning.credentials import OscoreKeys, SecretBox, _aad

__all__ = ["CoapKeyring", "DeviceIdentity", "KeyRecord", "oscore_kid_device_id"]

# Devices the registry does not accept uplinks from: no key is handed to DTLS or OSCORE for them.
_SILENT_STATES = ("registered", "decommissioned")


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Who a DTLS session or OSCORE context authenticated: the claim the uplink resource checks."""

    method: Literal["dtls", "oscore"]
    serial: str
    device_id: int
    generation: int


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The opened keys of one live CoAP device."""

    device_id: int
    serial: str
    generation: int
    psk: bytes | None
    oscore: OscoreKeys | None

    def identity(self, method: Literal["dtls", "oscore"]) -> DeviceIdentity:
        """The claim a session keyed with this record carries."""
        return DeviceIdentity(method, self.serial, self.device_id, self.generation)


def oscore_kid_device_id(kid: bytes) -> int | None:
    """The device id in a hub-issued OSCORE kid (``b"d"`` + 4-byte id, see ``new_secrets``), else None."""
    if len(kid) == 5 and kid[:1] == b"d":
        return int.from_bytes(kid[1:], "big")
    return None


class CoapKeyring:
    """Serial → keys, loaded per device on demand so 100 k devices need neither preloading nor restarts."""

    def __init__(
        self,
        db: Database,
        box: SecretBox,
        *,
        max_entries: int = 200_000,
        negative_ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.box = box
        self.max_entries = max_entries
        self.negative_ttl = negative_ttl
        self._clock = clock
        self._by_serial: dict[str, KeyRecord] = {}
        self._serial_of_id: dict[int, str] = {}
        self._serial_of_kid: dict[bytes, str] = {}
        self._missing: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[KeyRecord | None]] = {}

    def __len__(self) -> int:
        return len(self._by_serial)

    def cached(self, serial: str) -> KeyRecord | None:
        """The cached record, without I/O (the DTLS stack asks synchronously)."""
        return self._by_serial.get(serial)

    def cached_by_kid(self, kid: bytes) -> KeyRecord | None:
        """The cached record whose hub-side OSCORE recipient id is ``kid``."""
        serial = self._serial_of_kid.get(kid)
        return None if serial is None else self._by_serial.get(serial)

    def known_missing(self, serial: str) -> bool:
        """Whether ``serial`` was looked up lately and is not a live CoAP device."""
        seen = self._missing.get(serial)
        return seen is not None and self._clock() - seen < self.negative_ttl

    async def get(self, serial: str) -> KeyRecord | None:
        """The record of ``serial``, from the cache or the registry; None when it has no live keys."""
        record = self._by_serial.get(serial)
        if record is not None or self.known_missing(serial):
            return record
        pending = self._inflight.get(serial)
        if pending is not None:
            # A burst of handshakes from one device makes one query, not one each.
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._inflight[serial] = future
        try:
            rows = await self._fetch(Device.serial == serial)
            record = rows[0] if rows else None
            if record is None:
                if len(self._missing) > self.max_entries:
                    self._missing.clear()
                self._missing[serial] = self._clock()
            else:
                self._put(record)
            future.set_result(record)
            return record
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: with no other waiter it is not an unhandled error
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._inflight[serial]

    async def get_by_kid(self, kid: bytes) -> KeyRecord | None:
        """The record for an OSCORE kid: the cache, else the device id the kid carries (checked after opening)."""
        record = self.cached_by_kid(kid)
        if record is not None:
            return record
        device_id = oscore_kid_device_id(kid)
        if device_id is None:
            return None
        rows = await self._fetch(Device.id == device_id)
        if not rows:
            return None
        self._put(rows[0])
        return self.cached_by_kid(kid)

    def forget(self, device_id: int) -> None:
        """Drop a device's keys after rotation or revocation; the next use reloads them."""
        serial = self._serial_of_id.pop(device_id, None)
        if serial is None:
            return
        record = self._by_serial.pop(serial, None)
        self._missing.pop(serial, None)
        if record is not None and record.oscore is not None:
            self._serial_of_kid.pop(record.oscore.recipient_id, None)

    def forget_serial(self, serial: str) -> None:
        """Forget a negative lookup (a device was just enrolled under this serial)."""
        self._missing.pop(serial, None)

    def _put(self, record: KeyRecord) -> None:
        self.forget(record.device_id)
        if len(self._by_serial) >= self.max_entries:
            # Oldest loaded goes first (dicts keep insertion order); it is simply fetched again when used.
            oldest = next(iter(self._by_serial.values()))
            self.forget(oldest.device_id)
        self._by_serial[record.serial] = record
        self._serial_of_id[record.device_id] = record.serial
        self._missing.pop(record.serial, None)
        if record.oscore is not None:
            self._serial_of_kid[record.oscore.recipient_id] = record.serial

    async def _fetch(self, where: object) -> list[KeyRecord]:
        query = (
            select(Device.id, Device.serial, DeviceSecret.generation, DeviceSecret.psk_sealed)
            .add_columns(DeviceSecret.oscore_sealed)
            .join(DeviceSecret, DeviceSecret.device_id == Device.id)
            .where(where)  # type: ignore[arg-type]
            .where(Device.transport == "coap", Device.state.not_in(_SILENT_STATES))
            .where(DeviceSecret.revoked_at.is_(None))
        )
        async with self.db.session() as session:
            rows = (await session.execute(query)).all()
        return [self._open(*row) for row in rows]

    def _open(
        self, device_id: int, serial: str, generation: int, psk: str | None, oscore: str | None
    ) -> KeyRecord:
        # The AAD binds each blob to its device and generation, so a copied blob fails to open.
        return KeyRecord(
            device_id=device_id,
            serial=serial,
            generation=generation,
            psk=None if psk is None else self.box.open(psk, _aad(device_id, "psk", generation)),
            oscore=None
            if oscore is None
            else OscoreKeys.from_json(self.box.open_json(oscore, _aad(device_id, "oscore", generation))),
        )
