"""A rebooted device behind the embedded amqtt broker and behind a real Mosquitto: heard at once, duplicates once.

Devices are paho clients, raw MQTT 3.1.1 sockets (to set DUP the way a redelivering client does) and
Mosquitto's own ``mosquitto_pub`` (MQTT 5), a third-party client as in the field.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hub.db import Database
from hub.ingest.mqtt_wire import connect_packet, publish_packet
from tests.ingest.test_mqtt_embedded import embedded, online
from tests.ingest.test_mqtt_external import hub_client
from tests.ingest.test_mqtt_kit import Device, Rig, accepted, eventually, ingest_rig, rejected
from tests.ingest.test_sessions import frame
from tests.servers.mosquitto import MosquittoServer


@asynccontextmanager
async def rig_with(db: Database, tmp_path: Path, *serials: str) -> AsyncIterator[Rig]:
    """An ingest rig with ``serials`` enrolled."""
    async with ingest_rig(db, tmp_path) as rig:
        for serial in serials:
            await rig.enroll(serial)
        yield rig


def alarm_refused(rig: Rig, reason: str) -> float:
    """Refused smoke alarms over MQTT for ``reason``."""
    labels = {"transport": "mqtt", "kind": "smoke", "reason": reason}
    return rig.metrics.registry.get_sample_value("iothub_ingest_alarms_refused_total", labels) or 0.0


async def alarms_stored(rig: Rig, serial: str) -> int:
    """How many stored readings of ``serial`` had the detector sounding."""
    return sum(1 for value in await rig.stored(serial, "alarm") if value)


@pytest.mark.parametrize("last", [10, 64])
async def test_a_device_rebooted_behind_the_embedded_broker_is_heard(
    db: Database, tmp_path: Path, last: int
) -> None:
    """Its boot frame lost, the device counts from 1 on its new connection: the CONNECT began a session."""
    async with embedded(db, tmp_path, "SD-1") as (rig, mqtt):
        device = await online(rig, mqtt, "SD-1")
        for seq in range(last + 1):
            await device.up(frame(seq, fmt="json"))
        device.close()
        await eventually(lambda: accepted(rig.metrics) == last + 1, "the first boot's uplinks")
        rebooted = await online(rig, mqtt, "SD-1")
        await rebooted.up(frame(1, alarm=True, fmt="json"))
        await rebooted.up(frame(2, fmt="json"))
        await eventually(lambda: accepted(rig.metrics) == last + 3, "the new boot's uplinks")
        assert await alarms_stored(rig, "SD-1") == 1
        assert rejected(rig.metrics, "replayed") == 0
        rebooted.close()


class RawDevice:
    """An MQTT 3.1.1 client on a bare socket: QoS 1 publishes with a chosen packet id and DUP flag."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, serial: str, password: str) -> RawDevice:
        """Connect with a persistent session and read the CONNACK."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        packet = connect_packet(serial, username=serial, password=password, clean_session=False, keepalive=30)
        writer.write(packet)
        connack = await asyncio.wait_for(reader.readexactly(4), 10)
        assert connack[0] == 0x20 and connack[3] == 0, connack
        return cls(reader, writer)

    async def publish(self, topic: str, payload: bytes, packet_id: int, *, dup: bool = False) -> None:
        """Publish at QoS 1 and wait for the PUBACK."""
        packet = bytearray(publish_packet(topic, payload, 1, packet_id))
        packet[0] |= 0x08 if dup else 0
        self.writer.write(bytes(packet))
        puback = await asyncio.wait_for(self.reader.readexactly(4), 10)
        assert puback == bytes([0x40, 2]) + packet_id.to_bytes(2, "big")

    def drop(self) -> None:
        """Vanish without DISCONNECT."""
        self.writer.transport.abort()


async def test_a_dup_redelivery_on_the_new_connection_is_taken_once(db: Database, tmp_path: Path) -> None:
    """After a reconnect the device re-sends its unacknowledged frames with DUP: seen ones are not taken again."""
    async with embedded(db, tmp_path, "SD-1") as (rig, mqtt):
        assert mqtt.port is not None
        topic, password = "devices/SD-1/up", rig.passwords["SD-1"]
        device = await RawDevice.connect(mqtt.port, "SD-1", password)
        for seq in range(6):
            await device.publish(topic, frame(seq), seq + 1)
        device.drop()  # the PUBACK of seq 5 "lost": the device will send it again
        device = await RawDevice.connect(mqtt.port, "SD-1", password)
        await device.publish(topic, frame(5), 6, dup=True)
        await device.publish(topic, frame(4), 5, dup=True)
        await device.publish(topic, frame(6, alarm=True), 7)
        await eventually(lambda: accepted(rig.metrics) == 7, "seq 0-6 once each")
        assert rejected(rig.metrics, "replayed") == 2
        assert await alarms_stored(rig, "SD-1") == 1
        device.drop()


async def mosquitto_pub(port: int, serial: str, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish once with Mosquitto's own client, speaking MQTT 5, at QoS 1 (a new connection each time)."""
    args = ["-V", "mqttv5", "-h", "127.0.0.1", "-p", str(port), "-i", serial, "-q", "1", "-t", topic, "-s"]
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", *args, *(["-r"] if retain else []), stdin=asyncio.subprocess.PIPE
    )
    await asyncio.wait_for(proc.communicate(payload), 30)
    assert proc.returncode == 0


async def test_a_device_rebooted_behind_mosquitto_is_heard(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """Behind a broker the hub sees no CONNECT: the boot frame (seq 0) or the birth message begins a session."""
    async with rig_with(db, tmp_path, "X-1", "X-2", "X-3") as rig:
        hub = hub_client(rig, mosquitto)
        await hub.start()
        try:
            await eventually(hub.connected.is_set, "the hub subscribed")
            for serial in ("X-1", "X-2", "X-3"):
                client = Device(serial, mosquitto.port, None)
                assert await client.connect()
                for seq in range(21):
                    await client.up(frame(seq, fmt="json"))
                client.close()
            await eventually(lambda: accepted(rig.metrics) == 63, "the first boot of three devices")
            port = mosquitto.port
            # X-1 reboots and says so with its birth message, then counts from 1 (its seq 0 was lost).
            await mosquitto_pub(port, "X-1", "devices/X-1/status", b"online", retain=True)
            await mosquitto_pub(port, "X-1", "devices/X-1/up", frame(1, alarm=True, fmt="json"))
            # X-2 reboots without a birth message: its boot frame is enough.
            await mosquitto_pub(port, "X-2", "devices/X-2/up", frame(0, alarm=True, fmt="json"))
            # X-3 goes back to 1 with neither: a replay inside its session, refused but shown.
            await mosquitto_pub(port, "X-3", "devices/X-3/up", frame(1, alarm=True, fmt="json"))
            await eventually(lambda: accepted(rig.metrics) == 65, "the two rebooted devices' alarms")
            await eventually(lambda: alarm_refused(rig, "replayed") == 1, "X-3's refused alarm")
            assert [await alarms_stored(rig, s) for s in ("X-1", "X-2", "X-3")] == [1, 1, 0]
            letter = rig.ingest.dead_letters.recent(1)[0]
            assert (letter.device, letter.reason, letter.alarms) == ("X-3", "replayed", ("alarm",))
        finally:
            await hub.stop()


async def test_a_retained_birth_at_resubscribe_begins_no_session(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """The broker re-sends a retained "online" whenever the hub subscribes: that is no device reconnecting."""
    async with rig_with(db, tmp_path, "X-1") as rig:
        hub = hub_client(rig, mosquitto)
        await hub.start()
        await eventually(hub.connected.is_set, "the hub subscribed")
        await mosquitto_pub(mosquitto.port, "X-1", "devices/X-1/status", b"online", retain=True)
        for seq in range(11):
            await mosquitto_pub(mosquitto.port, "X-1", "devices/X-1/up", frame(seq, fmt="json"))
        await eventually(lambda: accepted(rig.metrics) == 11, "eleven uplinks")
        await hub.stop()
        await hub.start()
        try:
            await eventually(hub.connected.is_set, "the hub subscribed again")
            await mosquitto_pub(mosquitto.port, "X-1", "devices/X-1/up", frame(5, fmt="json"))
            await eventually(lambda: rejected(rig.metrics, "replayed") == 1, "the replay refused")
            assert accepted(rig.metrics) == 11
        finally:
            await hub.stop()


async def test_a_revoked_devices_alarm_through_mosquitto_is_shown(
    db: Database, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """The broker still lets a revoked device in (its password file is the operator's): the hub refuses, visibly."""
    async with rig_with(db, tmp_path, "X-1") as rig:
        await rig.revoke("X-1")
        hub = hub_client(rig, mosquitto)
        await hub.start()
        try:
            await eventually(hub.connected.is_set, "the hub subscribed")
            async with rig.ingest.bus.subscribe() as live:
                await mosquitto_pub(mosquitto.port, "X-1", "devices/X-1/up", frame(0, alarm=True, fmt="json"))
                await eventually(lambda: alarm_refused(rig, "revoked") == 1, "the revoked device's alarm")
                event = live.get_nowait()
            assert (event["type"], event["device"], event["reason"], event["events"]) == (
                "alarm_refused",
                "X-1",
                "revoked",
                ["alarm"],
            )
            assert event["decoded"] is False
        finally:
            await hub.stop()
