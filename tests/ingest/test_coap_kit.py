"""Shared pieces of the CoAP tests: a started hub (ingest + CoAP on port 0), clients, counters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiocoap
import pytest
from aiocoap.numbers import ContentFormat

from drivers import DRIVERS
from hub.config import CoapSettings
from hub.db import Database
from hub.db.devices import Device
from hub.ingest.coap import CoapIngest
from hub.ingest.service import IngestService
from hub.metrics import HubMetrics
from hub.telemetry import SQLiteStore, SQLiteStoreConfig
from provisioning.credentials import CredentialEvents, CredentialStore, IssuedSecrets, SecretBox
from provisioning.enroll import DeviceSpec, enroll_direct
from tests.fleet import ACTOR, TEST_SECRET_KEY, build_street

__all__ = ["CF", "Clock", "CoapHub", "coap_hub", "coap_request", "oscore_client_dir", "reading"]

CF = {"json": ContentFormat.JSON, "cbor": ContentFormat.CBOR, "binary": ContentFormat.OCTETSTREAM}
# Serial → kind of the devices every test starts with (all CoAP devices).
FLEET = {"C-1": "smoke", "C-2": "door", "C-3": "smoke", "C-4": "panic_button"}


class Clock:
    """A settable epoch clock."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class CoapHub:
    """Everything a CoAP test talks to."""

    db: Database
    coap: CoapIngest
    service: IngestService
    store: SQLiteStore
    clock: Clock
    events: CredentialEvents
    secrets: dict[str, IssuedSecrets] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """coap://127.0.0.1:<plain port>."""
        return f"coap://127.0.0.1:{self.coap.port}"

    def rejected(self, reason: str) -> float:
        """How many CoAP uplinks were refused for ``reason``."""
        registry = self.service.pipeline.metrics.registry
        labels = {"transport": "coap", "reason": reason}
        return registry.get_sample_value("iothub_ingest_rejected_total", labels) or 0.0

    def accepted(self, kind: str) -> float:
        """How many CoAP uplinks of ``kind`` were accepted."""
        registry = self.service.pipeline.metrics.registry
        labels = {"transport": "coap", "kind": kind}
        return registry.get_sample_value("iothub_ingest_messages_total", labels) or 0.0

    async def samples(self, serial: str, metric: str) -> list[Any]:
        """Stored values of one metric of one device."""
        await self.store.flush()
        return [value for _ts, value in await self.store.query(serial, metric, 0, self.clock.now + 10)]

    def token(self, serial: str) -> str:
        """The plain-CoAP token query of a device (its MQTT password)."""
        return f"t={self.secrets[serial].mqtt_password}"

    async def rotate(self, serial: str) -> IssuedSecrets:
        """Issue new secrets to a device (the old ones stop working), and announce it."""
        store = CredentialStore(self.db, SecretBox(TEST_SECRET_KEY), self.events)
        async with self.db.session() as session:
            device = await _device(session, serial)
            issued = await store.issue(session, device, ACTOR.name, ACTOR.channel)
        store.announce(device.id, "rotated")
        self.secrets[serial] = issued
        return issued

    async def revoke(self, serial: str) -> None:
        """Revoke a device's secrets, and announce it."""
        store = CredentialStore(self.db, SecretBox(TEST_SECRET_KEY), self.events)
        async with self.db.session() as session:
            device = await _device(session, serial)
            await store.revoke(session, device, ACTOR.name, ACTOR.channel)
        store.announce(device.id, "revoked")


async def _device(session: Any, serial: str) -> Device:
    from provisioning.devices import get_device_by_serial

    device = await get_device_by_serial(session, serial)
    assert device is not None
    return device


async def _enroll(db: Database, events: CredentialEvents, spec: DeviceSpec) -> IssuedSecrets:
    store = CredentialStore(db, SecretBox(TEST_SECRET_KEY), events)
    async with db.session() as session:
        enrolled = await enroll_direct(session, spec, actor=ACTOR, store=store)
    return enrolled.secrets


def reading(kind: str, fmt: str, **fields: Any) -> bytes:
    """A device payload of ``kind`` in ``fmt`` built by the kind's own driver."""
    return DRIVERS[kind].encode(fields, fmt)  # type: ignore[arg-type]


async def coap_request(
    client: aiocoap.Context,
    uri: str,
    payload: bytes,
    *,
    fmt: str | None = "json",
    query: Iterable[str] = (),
    code: aiocoap.numbers.Code = aiocoap.POST,
) -> aiocoap.Message:
    """Send one request and wait for its response."""
    message = aiocoap.Message(code=code, uri=uri, payload=payload)
    if fmt is not None:
        message.opt.content_format = CF[fmt]
    if query:
        message.opt.uri_query = tuple(query)
    return await asyncio.wait_for(client.request(message).response, 20)


def oscore_client_dir(path: Path, issued: IssuedSecrets, **overrides: str) -> Path:
    """A device-side aiocoap OSCORE context directory made from the issued keys."""
    assert issued.oscore is not None
    data = issued.oscore.for_device() | overrides
    path.mkdir(parents=True, exist_ok=True)
    (path / "secret.json").write_text(json.dumps(data))
    return path


@pytest.fixture
async def coap_hub(db: Database, tmp_path: Path) -> AsyncIterator[CoapHub]:
    """A started ingest service and CoAP component (plain allowed) with the FLEET enrolled as CoAP devices."""
    street = await build_street(db)
    events = CredentialEvents()
    secrets = {}
    for n, (serial, kind) in enumerate(FLEET.items()):
        household = street.households[n % len(street.households)]
        secrets[serial] = await _enroll(db, events, DeviceSpec(serial, kind, household, transport="coap"))
    clock = Clock()
    store = SQLiteStore(SQLiteStoreConfig(path=tmp_path / "t.sqlite3", retention_days=None), clock=clock)
    await store.start()
    service = IngestService(db, store, DRIVERS, HubMetrics(), events, clock, state_flush_interval=3600)
    await service.start()
    coap = CoapIngest(
        CoapSettings(port=0, allow_plain=True),
        service,
        SecretBox(TEST_SECRET_KEY),
        events,
        tmp_path / "coap",
        dtls=True,
    )
    await coap.start()
    try:
        yield CoapHub(db, coap, service, store, clock, events, secrets)
    finally:
        await coap.stop()
        await service.stop()
        await store.close()


@pytest.fixture
async def client() -> AsyncIterator[aiocoap.Context]:
    """An aiocoap client context, shut down after the test."""
    context = await aiocoap.Context.create_client_context()
    try:
        yield context
    finally:
        await context.shutdown()
