"""The hub's own MQTT connection against a real Mosquitto: refusals, a frozen broker, backlogs that need lookups."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from pathlib import Path

import pytest

from drivers import DRIVERS
from hub.config import MqttSettings
from hub.db import Database
from hub.errors import TransportError
from hub.ingest.mqtt_client import ExternalMqtt
from hub.ingest.mqtt_session import MqttConnection
from hub.ingest.service import IngestService
from hub.metrics import HubMetrics
from hub.telemetry import InfluxStore, InfluxStoreConfig
from provisioning.credentials import CredentialEvents
from provisioning.enroll import DeviceSpec, enroll_direct
from tests.ingest.test_mqtt_embedded import reading
from tests.ingest.test_mqtt_external import hub_client
from tests.ingest.test_mqtt_kit import Device, accepted, eventually, ingest_rig, now, rejected
from tests.provisioning.test_devices_kit import TECH, make_store, make_street
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer, write_password_file
from tests.telemetry.conftest import influx_count


class Nowhere:
    """An inbound that takes nothing (the connection tests below never subscribe)."""

    def take(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Refuse to take anything now."""
        raise AssertionError(f"unexpected message on {topic}")

    async def take_later(self, topic: str, payload: bytes, retain: bool) -> None:
        """Never called."""

    def congestion(self) -> None:
        """Never congested."""


async def test_a_refused_or_unreachable_broker_is_named_in_the_error(tmp_path: Path) -> None:
    """Wrong password → the CONNACK's reason; no listener → the address and the OS error."""
    passwords = write_password_file(tmp_path / "pw", {"hub": "right"})
    with MosquittoServer(tmp_path / "m", password_file=passwords) as server:
        with pytest.raises(TransportError, match="refused the connection: not authorized"):
            await MqttConnection.open(
                server.host, server.port, Nowhere(), client_id="hub", username="hub", password="wrong"
            )
        good = await MqttConnection.open(
            server.host, server.port, Nowhere(), client_id="hub", username="hub", password="right"
        )
        await good.publish("any/topic", b"x", 1)  # the PUBACK came back
        await good.close()
        assert await good.closed == "closed by the hub"
        port = server.port
    with pytest.raises(TransportError, match=f"cannot connect to the MQTT broker at 127.0.0.1:{port}"):
        await MqttConnection.open("127.0.0.1", port, Nowhere(), client_id="hub")


async def test_a_frozen_broker_is_noticed_by_the_keepalive_and_the_hub_reconnects(
    db: Database, tmp_path: Path
) -> None:
    """SIGSTOP on Mosquitto: no PINGRESP, the hub drops the connection; SIGCONT: it subscribes again."""
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("F-1")
        with MosquittoServer(tmp_path / "mosq") as server:
            hub = hub_client(rig, server)
            hub.keepalive = 1
            await hub.start()
            pid = server._process.pid
            assert pid is not None
            try:
                await eventually(hub.connected.is_set, "the first subscription")
                os.kill(pid, signal.SIGSTOP)
                try:
                    await eventually(lambda: not hub.connected.is_set(), "the dead connection noticed")
                    assert "no answer from the broker" in (hub.last_error or "")
                finally:
                    os.kill(pid, signal.SIGCONT)
                await eventually(lambda: hub.connects >= 2, "the reconnection")
                device = Device("F-1", server.port, None)
                assert await device.connect()
                await device.up(reading(1))
                await eventually(lambda: accepted(rig.metrics) == 1, "an uplink after the thaw")
                device.close()
            finally:
                await hub.stop()


async def test_a_backlog_behind_an_uncached_device_keeps_its_order(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """A device enrolled by another worker (not in this hub's cache): its messages wait for the lookup,
    the ones queued behind them wait too, and every QoS 1 message is taken once, in order."""
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("K-1")
        hub = hub_client(rig, mosquitto)
        await hub.start()
        await eventually(hub.connected.is_set, "the first subscription")
        await hub.stop()
        async with db.session() as session:  # enrolled behind this hub's back
            await enroll_direct(
                session,
                DeviceSpec(serial="N-1", kind="smoke", household="H1-101"),
                actor=TECH,
                store=rig.credentials,
            )
        assert rig.ingest.directory.get("N-1") is None
        device = Device("K-1", mosquitto.port, None)
        assert await device.connect()
        for seq in range(1, 301):
            serial = "N-1" if seq % 50 == 1 else "K-1"  # six uncached ones spread through the backlog
            await device.publish(f"devices/{serial}/up", reading(seq, 20 + seq / 100))
        device.close()
        await hub.start()
        try:
            await eventually(lambda: accepted(rig.metrics) == 300, "the whole backlog")
            known = await rig.stored("K-1", "temperature")
            assert known == sorted(known) and len(known) == 294
            assert await rig.stored("N-1", "temperature") == [20 + s / 100 for s in range(1, 301, 50)]
            assert hub.received == 300
        finally:
            await hub.stop()


async def test_a_stalled_store_pauses_reading_and_the_backlog_waits_in_the_broker(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer, influxdb: InfluxServer, influx_database: str
) -> None:
    """InfluxDB frozen (SIGSTOP): the hub stops reading once its queue is full, the broker keeps the rest
    of the QoS 1 backlog; thawed, every message arrives once."""
    await make_street(db, now())
    config = InfluxStoreConfig(
        url=influxdb.url,
        database=influx_database,
        batch_size=50,
        flush_interval=0.01,
        timeout=60,
        spool_dir=tmp_path / "spool",
    )
    store = InfluxStore(config)
    await store.start()
    metrics = HubMetrics()
    ingest = IngestService(db, store, DRIVERS, metrics, CredentialEvents(), time.time)
    await ingest.start()
    async with db.session() as session:
        done = await enroll_direct(
            session,
            DeviceSpec(serial="B-1", kind="smoke", household="H1-101"),
            actor=TECH,
            store=make_store(db, now, CredentialEvents()),
        )
    await ingest.directory.refresh(done.device.id)
    options = {"mode": "external", "port": mosquitto.port, "client_id": f"hub-{secrets.token_hex(4)}"}
    hub = ExternalMqtt(MqttSettings(**options), ingest, time.time, high_water=100)  # type: ignore[arg-type]
    await hub.start()
    pid = influxdb._process.pid
    assert pid is not None
    device = Device("B-1", mosquitto.port, None)
    try:
        await eventually(hub.connected.is_set, "the subscription")
        assert await device.connect()
        os.kill(pid, signal.SIGSTOP)
        try:
            for seq in range(1, 1001):
                device.client.publish("devices/B-1/up", reading(seq), qos=1)
            await eventually(lambda: hub.paused > 0, "reading paused")
            await asyncio.sleep(0.5)  # long enough to take everything, were it still reading
            assert hub.received < 500, "the hub kept reading although its store was stuck"
        finally:
            os.kill(pid, signal.SIGCONT)
        await eventually(lambda: accepted(metrics) == 1000, "the whole backlog", timeout=30)
        await store.flush()
        assert influx_count(influxdb, influx_database, "smoke", "temperature") == 1000
        assert store.stats.written == 1000 and rejected(metrics, "replayed") == 0
    finally:
        device.close()
        await hub.stop()
        await ingest.stop()
        await store.close()
