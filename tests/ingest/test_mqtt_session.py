"""The hub's own MQTT connection against a real Mosquitto: refusals, a frozen broker, backlogs that need lookups."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections import Counter
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
from hub.priority import UrgentLane
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


class Recording:
    """An inbound that notes, per message, the loop turn it was taken in; the first message needs an await."""

    def __init__(self) -> None:
        self.taken: list[tuple[bytes, int]] = []
        self.turn = 0
        self.first = asyncio.Event()
        self.go_on = asyncio.Event()

    def take(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Note the message, except the very first, which waits in ``take_later``."""
        if not self.taken:
            return False
        self.taken.append((payload, self.turn))
        return True

    async def take_later(self, topic: str, payload: bytes, retain: bool) -> None:
        """Hold the reader (a slow registry lookup) until the test lets it go."""
        self.first.set()
        await self.go_on.wait()
        self.taken.append((payload, self.turn))

    def congestion(self) -> None:
        """Never congested."""

    async def count_turns(self) -> None:
        """Count loop iterations: one step per iteration while anything else is ready."""
        while True:
            self.turn += 1
            await asyncio.sleep(0)


async def test_a_long_backlog_is_taken_a_bounded_number_per_loop_turn_in_order(
    mosquitto: MosquittoServer,
) -> None:
    """1,000 messages read in large chunks: never more than ``per_turn`` in one turn of the loop, so other
    callbacks (an alarm's case) run between turns; every message taken once, in order."""
    inbound = Recording()
    reader = await MqttConnection.open(
        mosquitto.host, mosquitto.port, inbound, client_id="turns-reader", clean_session=True, per_turn=50
    )
    writer = await MqttConnection.open(mosquitto.host, mosquitto.port, Nowhere(), client_id="turns-writer")
    ticker = asyncio.create_task(inbound.count_turns())
    try:
        await reader.subscribe([("turns/#", 0)], still_busy=lambda: False)
        for n in range(1001):
            await writer.publish("turns/x", str(n).encode(), 0)
            if n == 0:
                await asyncio.wait_for(inbound.first.wait(), 10)  # the reader is paused behind it now
        await writer.publish("flush", b"-", 1)  # once acknowledged, the broker has routed all before it
        await asyncio.sleep(0.2)  # the rest piles up in the socket: the first read after the lookup is large
        inbound.go_on.set()
        await eventually(lambda: len(inbound.taken) == 1001, "the whole backlog")
    finally:
        ticker.cancel()
        await reader.close()
        await writer.close()
    assert [int(payload) for payload, _turn in inbound.taken] == list(range(1001))
    per_turn = Counter(turn for _payload, turn in inbound.taken[1:])
    assert max(per_turn.values()) == 50  # the cap was reached, and never passed
    assert len(per_turn) >= 1000 // 50


async def test_reading_yields_to_urgent_work_and_resumes_once_it_is_done(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """While an alarm holds the lane the hub finishes its turn, then reads no further; released, it reads on
    and loses nothing."""
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("U-1")
        hub = hub_client(rig, mosquitto)
        hub.lane = lane = UrgentLane(max_yield_s=30)
        await hub.start()
        device = Device("U-1", mosquitto.port, None)
        try:
            await eventually(hub.connected.is_set, "the subscription")
            assert await device.connect()
            release = lane.hold()  # an alarm on its way to a phone
            await device.up(reading(1))
            await eventually(lambda: accepted(rig.metrics) == 1, "the turn that was under way")
            assert lane.yields == 1
            for seq in range(2, 6):
                await device.up(reading(seq))
            await asyncio.sleep(0.3)  # room to read them, were the hub still reading
            assert accepted(rig.metrics) == 1 and hub.received == 1
            release()
            await eventually(lambda: accepted(rig.metrics) == 5, "the rest once the alarm is out")
            assert lane.cut_short == 0 and rejected(rig.metrics, "replayed") == 0
        finally:
            device.close()
            await hub.stop()
