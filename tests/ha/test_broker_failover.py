"""The broker is a three-node NATS cluster: killing the node the hub reads from under QoS 1 load loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from drivers import DRIVERS
from hub.config import MqttSettings
from hub.db import Database
from hub.ingest.mqtt_client import ExternalMqtt
from tests.ha.fleet import Fleet, QosDevice
from tests.ingest.test_mqtt_kit import Rig, eventually, ingest_rig
from tests.servers.nats import NatsCluster

# A device's uplink n carries the timestamp BASE + n (whole seconds, as the binary frame has them): the
# telemetry store's timestamps then name the sequence numbers it holds.
BASE = int(time.time()) - 80_000
DEVICES = 12


def uplink(_serial: str, seq: int) -> bytes:
    """A smoke sensor's binary frame numbered ``seq``."""
    body = {"seq": seq, "ts": BASE + seq, "smoke": 0.01, "temperature": 21.0, "battery": 90, "rssi": -80}
    return DRIVERS["smoke"].encode(body, "binary")


async def stored(rig: Rig, serial: str) -> set[int]:
    """The sequence numbers of ``serial`` in the telemetry store."""
    await rig.store.flush()
    assert rig.store._db is not None
    cursor = await rig.store._db.execute(
        "SELECT DISTINCT ts_ns FROM telemetry WHERE device_id = ? AND metric = 'battery'", (serial,)
    )
    return {row[0] // 1_000_000_000 - BASE for row in await cursor.fetchall()}


async def missing(rig: Rig, fleet: Fleet) -> dict[str, set[int]]:
    """Per device, what the broker acknowledged and the hub has not stored."""
    out = {}
    for serial, acked in fleet.acked().items():
        lost = acked - await stored(rig, serial)
        if lost:
            out[serial] = lost
    return out


async def test_killing_the_hubs_broker_node_under_qos1_load_loses_nothing(
    db: Database, tmp_path: Path, nats_cluster: NatsCluster
) -> None:
    """The hub fails over to the next node of HUB_MQTT_SERVERS; its session (R3 in JetStream) goes on there."""
    async with ingest_rig(db, tmp_path) as rig:
        serials = [f"NF-{n:02d}" for n in range(DEVICES)]
        for serial in serials:
            await rig.enroll(serial)
        settings = MqttSettings(
            mode="external", servers=nats_cluster.servers_setting, client_id="hub-nats-failover"
        )
        hub = ExternalMqtt(settings, rig.ingest, time.time, backoff=(0.2, 1.0))
        await hub.start()
        servers = nats_cluster.servers
        fleet = Fleet([QosDevice(s, servers, first=n) for n, s in enumerate(serials)], uplink)
        try:
            await eventually(hub.connected.is_set, "the hub's first subscription", timeout=30)
            first = hub.where
            await fleet.start()
            await fleet.send(rate=600, seconds=2.0)
            node = nats_cluster.node_on(int(first.rsplit(":", 1)[1]))
            node.kill()
            await fleet.send(rate=600, seconds=3.0)
            assert await fleet.settle(timeout=60), "devices kept uplinks the cluster never acknowledged"
            await eventually(
                lambda: hub.connected.is_set() and hub.where != first, "a subscription on another node", 30
            )
            total = sum(len(a) for a in fleet.acked().values())
            assert total >= DEVICES * 20
            # Unacknowledged deliveries to the dead connection come again after ack_wait (3 s here).
            deadline = time.monotonic() + 45
            while (lost := await missing(rig, fleet)) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            assert not lost, f"acknowledged by the broker, never stored: {lost}"
            assert hub.connects >= 2
        finally:
            await fleet.close()
            await hub.stop()
