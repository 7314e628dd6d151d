"""MQTT ingest as a client of a real Mosquitto: uplinks, refusals, queued messages, reconnects, shared groups."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from hub.config import MqttSettings
from hub.db import Database
from hub.ingest.mqtt_client import ExternalMqtt
from tests.ingest.test_mqtt_embedded import reading
from tests.ingest.test_mqtt_kit import Device, Rig, accepted, eventually, ingest_rig, rejected
from tests.servers.mosquitto import MosquittoServer


def hub_client(rig: Rig, server: MosquittoServer, **settings: object) -> ExternalMqtt:
    """An external-mode MQTT component with its own client id."""
    options = {"mode": "external", "port": server.port, "client_id": f"hub-{secrets.token_hex(4)}"}
    return ExternalMqtt(MqttSettings(**(options | settings)), rig.ingest, time.time, backoff=(0.05, 0.2))  # type: ignore[arg-type]


async def test_uplinks_and_refusals_through_mosquitto(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """A known device's uplink is stored; unknown and revoked serials are refused by the hub."""
    async with ingest_rig(db, tmp_path) as rig:
        for serial in ("X-1", "X-2"):
            await rig.enroll(serial)
        await rig.revoke("X-2")
        hub = hub_client(rig, mosquitto)
        await hub.start()
        try:
            await eventually(hub.connected.is_set, "the hub subscribed")
            device = Device("X-1", mosquitto.port, None)
            assert await device.connect()
            await device.up(reading(1, 20.5))
            await device.publish("devices/NOPE/up", reading(1))
            await device.publish("devices/X-2/up", reading(1))
            await device.up(b"not json at all")
            await device.up(reading(2, 21.5, "cbor"), suffix="cbor")
            await eventually(lambda: accepted(rig.metrics) == 2, "two accepted uplinks")
            assert await rig.stored("X-1", "temperature") == [20.5, 21.5]
            await eventually(lambda: rejected(rig.metrics, "unknown_format") == 1, "the garbage refusal")
            assert rejected(rig.metrics, "unknown_device") == 1 and rejected(rig.metrics, "revoked") == 1
            ok, _detail = await hub.health()
            assert ok
            record = await hub.send_command("X-1", "self_test")
            device.client.subscribe("devices/X-1/cmd", qos=1)
            answer = {"cid": record.cid, "cmd": "self_test", "ok": False, "code": 3, "msg": "sounder fault"}
            await device.publish("devices/X-1/cmd/result", json.dumps(answer).encode())
            done = await hub.commands.wait(record, timeout=5)
            assert (
                done.status == "failed"
                and done.result is not None
                and done.result["message"] == "sounder fault"
            )
            device.close()
        finally:
            await hub.stop()


async def test_messages_queued_while_the_hub_is_down_arrive_at_reconnect(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """clean_session=false and QoS 1: the broker keeps what devices sent while the hub was away."""
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("Q-1")
        hub = hub_client(rig, mosquitto)
        await hub.start()
        await eventually(hub.connected.is_set, "the first subscription")
        await hub.stop()
        device = Device("Q-1", mosquitto.port, None)
        assert await device.connect()
        for seq in range(1, 6):
            await device.up(reading(seq, 20.0 + seq))
        device.close()
        assert accepted(rig.metrics) == 0
        await hub.start()
        try:
            await eventually(lambda: accepted(rig.metrics) == 5, "the five queued uplinks")
            assert await rig.stored("Q-1", "temperature") == [21.0, 22.0, 23.0, 24.0, 25.0]
        finally:
            await hub.stop()


async def test_the_client_reconnects_after_the_broker_restarts(db: Database, tmp_path: Path) -> None:
    """Broker gone: health says so; broker back on the same port: the hub resubscribes and ingests."""
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("R-1")
        with MosquittoServer(tmp_path / "mosq") as server:
            hub = hub_client(rig, server)
            await hub.start()
            try:
                await eventually(hub.connected.is_set, "the first connection")
                server.stop()
                await eventually(lambda: not hub.connected.is_set(), "the lost connection")
                ok, detail = await hub.health()
                assert not ok and "connecting" in detail
                server.start()
                await eventually(lambda: hub.connects == 2, "the reconnection")
                device = Device("R-1", server.port, None)
                assert await device.connect()
                await device.up(reading(1))
                await eventually(lambda: accepted(rig.metrics) == 1, "an uplink after the restart")
                device.close()
            finally:
                await hub.stop()


async def test_a_shared_subscription_splits_uplinks_between_hub_workers(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """Two hub clients in one $share group: each uplink is taken once, and both take some."""
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("SH-1")
        group = f"g{secrets.token_hex(3)}"
        workers = [hub_client(rig, mosquitto, shared_group=group) for _ in range(2)]
        for worker in workers:
            await worker.start()
        try:
            for worker in workers:
                await eventually(worker.connected.is_set, "both workers subscribed")
            device = Device("SH-1", mosquitto.port, None)
            assert await device.connect()
            for seq in range(1, 21):
                await device.up(reading(seq))
            await eventually(lambda: accepted(rig.metrics) == 20, "twenty uplinks")
            assert rejected(rig.metrics, "replayed") == 0
            assert all(worker.received > 0 for worker in workers)
            device.close()
        finally:
            for worker in workers:
                await worker.stop()
