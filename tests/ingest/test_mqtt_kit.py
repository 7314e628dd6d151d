"""Shared helpers (no tests): an ingest rig with enrolled devices, and paho clients playing the devices."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from drivers import DRIVERS
from hub.db import Database
from hub.ingest.service import IngestService
from hub.metrics import HubMetrics
from hub.telemetry.sqlite import SQLiteStore, SQLiteStoreConfig
from provisioning.credentials import CredentialEvents, CredentialStore
from provisioning.devices import get_device_by_serial
from provisioning.enroll import DeviceSpec, enroll_direct
from tests.provisioning.test_devices_kit import TECH, make_store, make_street

__all__ = ["Device", "Rig", "eventually", "ingest_rig", "rejected"]


def now() -> dt.datetime:
    """Wall-clock UTC (the registry's audit clock)."""
    return dt.datetime.now(dt.UTC)


async def eventually(check: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` until it is truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def rejected(metrics: HubMetrics, reason: str, transport: str = "mqtt") -> float:
    """How many uplinks were refused for ``reason``."""
    value = metrics.registry.get_sample_value(
        "iothub_ingest_rejected_total", {"transport": transport, "reason": reason}
    )
    return value or 0.0


def accepted(metrics: HubMetrics, kind: str = "smoke", transport: str = "mqtt") -> float:
    """How many uplinks of ``kind`` were accepted."""
    value = metrics.registry.get_sample_value(
        "iothub_ingest_messages_total", {"transport": transport, "kind": kind}
    )
    return value or 0.0


@dataclass
class Rig:
    """A started IngestService over a real SQLite store, with devices enrolled through provisioning."""

    db: Database
    ingest: IngestService
    store: SQLiteStore
    metrics: HubMetrics
    events: CredentialEvents
    credentials: CredentialStore
    passwords: dict[str, str] = field(default_factory=dict)

    async def enroll(self, serial: str, kind: str = "smoke") -> str:
        """Enroll a device into household H1-101; returns its MQTT password."""
        async with self.db.session() as session:
            done = await enroll_direct(
                session,
                DeviceSpec(serial=serial, kind=kind, household="H1-101"),
                actor=TECH,
                store=self.credentials,
            )
        await self.ingest.directory.refresh(done.device.id)
        self.passwords[serial] = done.secrets.mqtt_password
        return done.secrets.mqtt_password

    async def revoke(self, serial: str) -> None:
        """Revoke a device's credentials and announce it, as the API does."""
        async with self.db.session() as session:
            device = await get_device_by_serial(session, serial)
            assert device is not None
            await self.credentials.revoke(session, device, TECH.name, TECH.channel)
        self.credentials.announce(device.id, "revoked")

    async def rotate(self, serial: str) -> str:
        """Issue new credentials; returns the new password."""
        async with self.db.session() as session:
            device = await get_device_by_serial(session, serial)
            assert device is not None
            issued = await self.credentials.issue(session, device, TECH.name, TECH.channel)
        self.credentials.announce(device.id, "rotated")
        self.passwords[serial] = issued.mqtt_password
        return issued.mqtt_password

    async def stored(self, serial: str, metric: str) -> list[Any]:
        """The values of ``metric`` stored for ``serial``."""
        await self.store.flush()
        assert self.store._db is not None
        cursor = await self.store._db.execute(
            "SELECT value FROM telemetry WHERE device_id = ? AND metric = ? ORDER BY ts_ns", (serial, metric)
        )
        return [row[0] for row in await cursor.fetchall()]


@asynccontextmanager
async def ingest_rig(db: Database, tmp_path: Path) -> AsyncIterator[Rig]:
    """Start a store and an IngestService on ``db``, with the test street's places."""
    await make_street(db, now())
    events = CredentialEvents()
    store = SQLiteStore(SQLiteStoreConfig(path=tmp_path / "telemetry.db", flush_interval=0.05))
    await store.start()
    metrics = HubMetrics()
    ingest = IngestService(db, store, DRIVERS, metrics, events, time.time, state_flush_interval=0.2)
    await ingest.start()
    try:
        yield Rig(db, ingest, store, metrics, events, make_store(db, now, events))
    finally:
        await ingest.stop()
        await store.close()


class Device:
    """A paho client playing one device, its network loop in paho's thread."""

    def __init__(self, serial: str, port: int, password: str | None, *, client_id: str | None = None) -> None:
        self.serial = serial
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or serial, clean_session=True
        )
        if password is not None:
            self.client.username_pw_set(serial, password)
        self.client.will_set(f"devices/{serial}/status", b"offline", qos=1, retain=True)
        self.port = port
        self.connack: Any = None
        self.disconnected = threading.Event()
        self.received: list[tuple[str, bytes]] = []
        self.subacks: list[Any] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.disconnected.set()
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self.subacks.extend(codes)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connack = reason

    async def connect(self) -> bool:
        """Connect and wait for the CONNACK; True when accepted."""
        self.client.connect_async("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        await eventually(lambda: self.connack is not None or self.disconnected.is_set(), "a CONNACK")
        return self.connack is not None and not self.connack.is_failure

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish and wait (without blocking the loop the broker runs in) until the broker acknowledged it."""
        info = self.client.publish(topic, payload, qos=qos)
        await eventually(info.is_published, f"the PUBACK on {topic}")

    async def up(self, payload: bytes, suffix: str | None = None) -> None:
        """Publish an uplink."""
        await self.publish(f"devices/{self.serial}/up" + (f"/{suffix}" if suffix else ""), payload)

    def drop(self) -> None:
        """Vanish without DISCONNECT (the broker sends the will)."""
        sock = self.client.socket()
        assert sock is not None
        self.client.loop_stop()
        sock.close()

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
