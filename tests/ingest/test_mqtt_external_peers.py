"""External mode against other brokers and clients: shared subscriptions proven or refused, MQTT 5 devices.

Mosquitto 2.0 implements ``$share`` for MQTT 3.1.1 clients; NATS 2.9's MQTT listener and RabbitMQ 3.10's
MQTT plug-in grant the SUBACK and deliver nothing through it. Each broker is a real one on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from hub.config import MqttSettings
from hub.db import Database
from hub.ingest.mqtt_client import ExternalMqtt
from provisioning.mosquitto_export import export_mosquitto
from tests.ingest.test_mqtt_embedded import reading
from tests.ingest.test_mqtt_kit import Device, Rig, accepted, eventually, ingest_rig, rejected
from tests.servers.mosquitto import MosquittoServer

HUB_USER, HUB_PASSWORD = "iothub", "hub-pw"


def worker(rig: Rig, port: int, **settings: object) -> ExternalMqtt:
    """An external-mode hub worker with a client id of its own."""
    options = {"mode": "external", "port": port, "client_id": f"hub-{secrets.token_hex(4)}"}
    return ExternalMqtt(MqttSettings(**(options | settings)), rig.ingest, time.time, backoff=(0.05, 0.2))  # type: ignore[arg-type]


async def stopped(*workers: ExternalMqtt) -> None:
    """Stop every worker."""
    for each in workers:
        await each.stop()


async def test_two_hubs_share_the_uplinks_through_mosquitto_with_the_exported_acl(
    db: Database, tmp_path: Path
) -> None:
    """Both workers prove the group (again after a broker restart); 200 uplinks stored once, split; probes unseen."""
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("SH-1")
        out = tmp_path / "files"
        exported = await export_mosquitto(
            db, rig.credentials, out, hub_user=HUB_USER, hub_password=HUB_PASSWORD, issue=True
        )
        device_password = exported.issued["SH-1"]
        await rig.ingest.directory.refresh(rig.ingest.directory.get("SH-1").id)  # type: ignore[union-attr]
        files = {"password_file": out / "password_file", "acl_file": out / "acl_file"}
        with MosquittoServer(tmp_path / "mosq", **files) as server:
            login = {"username": HUB_USER, "password": HUB_PASSWORD, "shared_group": "hubs"}
            workers = [worker(rig, server.port, **login) for _ in range(2)]
            for each in workers:
                await each.start()
            try:
                for each in workers:
                    await eventually(each.connected.is_set, "both workers proved the shared group")
                    assert each.probe is not None and each.probe.proven == 1
                device = Device("SH-1", server.port, device_password)
                assert await device.connect()
                for seq in range(1, 201):
                    await device.publish("devices/SH-1/up", reading(seq), qos=1)
                await eventually(lambda: accepted(rig.metrics) == 200, "200 uplinks")
                assert len(await rig.stored("SH-1", "temperature")) == 200
                assert rejected(rig.metrics, "replayed") == 0 and rejected(rig.metrics, "acl") == 0
                assert all(each.received > 1 for each in workers), [each.received for each in workers]
                assert not [d for d in rig.ingest.dead_letters.recent() if "probe" in d.detail]
                # The probe topics are the hub's: Mosquitto grants a device's SUBSCRIBE but its ACL
                # delivers no probe (the PUBACK after a third worker's probe comes behind any copy).
                device.client.subscribe([("$share/spy/hub/probe/#", 1), ("hub/probe/#", 1)])
                await eventually(lambda: len(device.subacks) == 2, "the SUBACKs")
                third = worker(rig, server.port, **login)
                workers.append(third)
                await third.start()
                await eventually(third.connected.is_set, "a third worker proved the group")
                await device.publish("devices/SH-1/up", reading(201), qos=1)
                assert device.received == []
                device.close()
                server.stop()
                server.start()
                for each in workers:
                    await eventually(lambda w=each: w.connects == 2, "the reconnection")  # type: ignore[misc]
                    assert each.probe is not None and each.probe.proven == 2
                await eventually(lambda: accepted(rig.metrics) == 201, "the 201st uplink")
            finally:
                await stopped(*workers)


@pytest.mark.parametrize("broker", ["nats_mqtt", "rabbitmq"])
async def test_a_shared_group_on_a_broker_without_share_stays_not_ready_and_says_why(
    db: Database, tmp_path: Path, broker: str, request: pytest.FixtureRequest
) -> None:
    """NATS and RabbitMQ grant $share and deliver nothing: not ready, naming $share; unshared, the same broker works."""
    port = request.getfixturevalue(broker).port
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("NS-1")
        shared = worker(rig, port, shared_group="hubs", shared_probe_timeout=1.0)
        plain = worker(rig, port)
        await shared.start()
        try:
            await eventually(lambda: shared.last_error is not None, "the probe's verdict", timeout=20)
            ok, detail = await shared.health()
            assert not ok and "does not implement shared subscriptions ($share)" in detail, detail
            assert not shared.connected.is_set() and shared.probe is not None and shared.probe.proven == 0
            await plain.start()
            await eventually(plain.connected.is_set, "the unshared worker subscribed", timeout=20)
            device = Device("NS-1", port, None)
            assert await device.connect()
            for seq in range(1, 11):
                await device.up(reading(seq))
            await eventually(lambda: accepted(rig.metrics) == 10, "ten uplinks through the plain filter")
            assert await rig.stored("NS-1", "temperature") == [21.5] * 10
            ok, detail = await shared.health()
            assert not ok and "$share" in detail
            device.close()
        finally:
            await stopped(shared, plain)


async def test_an_mqtt5_device_reaches_the_hub_through_mosquitto(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """mosquitto_pub -V mqttv5 and paho MQTTv5 publish to Mosquitto; the hub's 3.1.1 client takes both."""
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("V5-1")
        hub = worker(rig, mosquitto.port)
        await hub.start()
        try:
            await eventually(hub.connected.is_set, "the hub subscribed")
            proc = await asyncio.create_subprocess_exec(
                *("mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(mosquitto.port)),
                *("-i", "V5-1", "-q", "1", "-t", "devices/V5-1/up", "-m", reading(1, 19.5).decode()),
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                _out, err = await asyncio.wait_for(proc.communicate(), 10)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            assert proc.returncode == 0, err
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="V5-1", protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", mosquitto.port)
            client.loop_start()
            try:
                info = client.publish("devices/V5-1/up", reading(2, 20.5), qos=1)
                await eventually(info.is_published, "paho's PUBACK")
            finally:
                client.disconnect()
                client.loop_stop()
            await eventually(lambda: accepted(rig.metrics) == 2, "both MQTT 5 uplinks")
            assert await rig.stored("V5-1", "temperature") == [19.5, 20.5]
        finally:
            await hub.stop()
