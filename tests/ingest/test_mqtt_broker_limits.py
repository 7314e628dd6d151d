"""The embedded broker against hostile and unusual peers: raw sockets, mosquitto_pub -V mqttv5, paho as a process.

Each test bounds its waits: on amqtt alone (before hub/ingest/mqtt_guard.py) the MQTT 5 CONNECT, the idle
socket and the connection over the cap were left hanging, and the frozen device stayed online.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from hub.config import MqttSettings
from hub.db import Database
from hub.ingest import mqtt_wire as wire
from hub.ingest.mqtt_embedded import EmbeddedMqtt
from hub.metrics import HubMetrics
from tests.ingest.test_mqtt_embedded import reading
from tests.ingest.test_mqtt_kit import Device, Rig, accepted, eventually, ingest_rig

ROOT = Path(__file__).resolve().parents[2]
CONNACK_OK, CONNACK_BAD_VERSION = b"\x20\x02\x00\x00", b"\x20\x02\x00\x01"
PINGRESP = b"\xd0\x00"


def closed(metrics: HubMetrics, reason: str) -> float:
    """How many connections the broker closed for ``reason``."""
    return metrics.registry.get_sample_value("iothub_mqtt_closed_total", {"reason": reason}) or 0.0


def open_connections(metrics: HubMetrics) -> float:
    """The broker's open connections gauge."""
    return metrics.registry.get_sample_value("iothub_mqtt_connections") or 0.0


def online(rig: Rig, serial: str) -> bool:
    """Whether the hub holds ``serial`` online."""
    entry = rig.ingest.directory.get(serial)
    state = rig.ingest.states.get(entry.id) if entry is not None else None
    return state is not None and state.online


@asynccontextmanager
async def broker(
    db: Database, tmp_path: Path, *serials: str, **settings: Any
) -> AsyncIterator[tuple[Rig, EmbeddedMqtt, int]]:
    """A rig with ``serials`` enrolled and the embedded broker, with ``settings``, on a free port."""
    async with ingest_rig(db, tmp_path) as rig:
        for serial in serials:
            await rig.enroll(serial)
        mqtt_settings = MqttSettings(port=0, **settings)
        component = EmbeddedMqtt(mqtt_settings, rig.ingest, rig.events, time.time, command_timeout=5.0)
        await component.start()
        assert component.port is not None
        try:
            yield rig, component, component.port
        finally:
            await component.stop()


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain TCP connection to the broker."""
    return await asyncio.open_connection("127.0.0.1", port)


async def until_closed(reader: asyncio.StreamReader, timeout: float = 10.0) -> bytes:
    """Everything the broker sends until it closes the connection (bounded: a hang fails the test)."""
    return await asyncio.wait_for(reader.read(), timeout)


async def logged_in(port: int, rig: Rig, serial: str, keepalive: int = 60) -> tuple[Any, Any]:
    """A raw connection past an accepted CONNECT."""
    reader, writer = await raw(port)
    password = rig.passwords[serial]
    writer.write(
        wire.connect_packet(
            serial, username=serial, password=password, clean_session=True, keepalive=keepalive
        )
    )
    assert await asyncio.wait_for(reader.readexactly(4), 10) == CONNACK_OK
    return reader, writer


def connect_v5(client_id: str) -> bytes:
    """An MQTT 5 CONNECT: protocol level 5, and a properties length after the keep-alive."""
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + len(client_id).to_bytes(2, "big") + client_id.encode()
    return bytes([0x10, len(body)]) + body


def connect_v31(client_id: str) -> bytes:
    """An MQTT 3.1 CONNECT (``MQIsdp``, level 3), which amqtt does not speak either."""
    body = b"\x00\x06MQIsdp\x03\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id.encode()
    return bytes([0x10, len(body)]) + body


async def test_other_protocol_levels_get_connack_1_at_once_and_no_traceback(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """mosquitto_pub -V mqttv5, paho MQTTv5, raw levels 5, 3, 6: CONNACK 0x01 and closed; abandoned ones: no traceback."""
    caplog.set_level(logging.INFO)
    async with broker(db, tmp_path, "SD-1") as (rig, _component, port):
        proc = await asyncio.create_subprocess_exec(
            *("mosquitto_pub", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(port), "-i", "SD-1"),
            *("-u", "SD-1", "-P", rig.passwords["SD-1"], "-t", "devices/SD-1/up", "-m", "{}"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _out, err = await asyncio.wait_for(proc.communicate(), 10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        assert proc.returncode != 0 and b"Unsupported Protocol Version" in err, err
        level6 = connect_v5("SD-1").replace(b"MQTT\x05", b"MQTT\x06")
        for connect in (connect_v5("SD-1"), connect_v31("SD-1"), level6):
            reader, writer = await raw(port)
            writer.write(connect)
            assert await until_closed(reader) == CONNACK_BAD_VERSION
            writer.close()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="SD-1", protocol=mqtt.MQTTv5)
        client.username_pw_set("SD-1", rig.passwords["SD-1"])
        reasons: list[Any] = []
        client.on_connect = lambda _c, _u, _f, reason, _p: reasons.append(reason)
        assert client.connect("127.0.0.1", port) == mqtt.MQTT_ERR_SUCCESS
        await asyncio.to_thread(client.loop, 10.0)
        assert [str(reason) for reason in reasons] == ["Unsupported protocol version"]
        client.socket() is None or client.socket().close()  # type: ignore[union-attr]
        # Abandoned at once (a reset): the answer meets a dead socket, which must not end in a traceback.
        reserved_flag = bytearray(
            wire.connect_packet("SD-1", username=None, password=None, clean_session=True, keepalive=60)
        )
        reserved_flag[9] |= 0x01  # the CONNECT flags' reserved bit: amqtt refuses it and closes
        for connect in (connect_v5("SD-1"), bytes(reserved_flag)):
            _reader, writer = await raw(port)
            writer.write(connect)
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        await eventually(lambda: closed(rig.metrics, "protocol_version") == 6, "six refusals counted")
        device = Device("SD-1", port, rig.passwords["SD-1"])
        assert await device.connect()
        await device.up(reading(1))
        await eventually(lambda: accepted(rig.metrics) == 1, "a 3.1.1 device's uplink after them")
        device.close()
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


async def test_idle_and_half_connect_sockets_are_closed_after_the_connect_timeout(
    db: Database, tmp_path: Path
) -> None:
    """Nothing sent, half a CONNECT, a CONNECT trickled too slowly: each closed after HUB_MQTT_CONNECT_TIMEOUT."""
    async with broker(db, tmp_path, "SD-1", connect_timeout=0.5) as (rig, _component, port):
        connect = wire.connect_packet(
            "SD-1", username="SD-1", password=rig.passwords["SD-1"], clean_session=True, keepalive=60
        )
        silent, w1 = await raw(port)
        half, w2 = await raw(port)
        w2.write(connect[: len(connect) // 2])
        slow, w3 = await raw(port)
        w3.write(connect[:1])
        await asyncio.sleep(0.3)
        w3.write(connect[1:4])
        for reader in (silent, half, slow):
            assert await until_closed(reader) == b""
        for writer in (w1, w2, w3):
            writer.close()
        assert closed(rig.metrics, "connect_timeout") == 3
        await eventually(lambda: open_connections(rig.metrics) == 0, "the gauge back to 0")
        reader, writer = await logged_in(port, rig, "SD-1")
        writer.close()


async def test_connections_past_the_cap_are_closed_at_once_and_counted(db: Database, tmp_path: Path) -> None:
    """HUB_MQTT_MAX_CONNECTIONS=2: a third connection is closed at once; a slot freed takes a device again."""
    async with broker(db, tmp_path, "SD-1", max_connections=2, connect_timeout=60) as (rig, _c, port):
        _r1, first = await raw(port)
        _r2, second = await raw(port)
        await eventually(lambda: open_connections(rig.metrics) == 2, "two open connections")
        third, w3 = await raw(port)
        assert await until_closed(third) == b""
        w3.close()
        assert closed(rig.metrics, "max_connections") == 1
        assert rig.metrics.registry.get_sample_value("iothub_mqtt_connections_limit") == 2
        first.close()
        await eventually(lambda: open_connections(rig.metrics) == 1, "a slot freed")
        device = Device("SD-1", port, rig.passwords["SD-1"])
        assert await device.connect()
        await device.up(reading(1))
        await eventually(lambda: accepted(rig.metrics) == 1, "the device's uplink")
        device.close()
        second.close()


MALFORMED: list[tuple[str, bytes, str]] = [
    (
        "wildcard topic, a PINGREQ as payload",
        wire.publish_packet("devices/SD-1/+", b"\xc0\x00", 0),
        "malformed",
    ),
    ("topic with #", wire.publish_packet("devices/#", b"{}", 1, 7), "malformed"),
    ("QoS 3", b"\x36" + wire.publish_packet("devices/SD-1/up", b"{}", 1, 7)[1:], "malformed"),
    ("empty topic", wire.publish_packet("", b"{}", 0), "malformed"),
    ("topic not UTF-8", b"\x30\x06\x00\x02\xff\xfe{}", "malformed"),
    ("QoS 1 packet id 0", wire.publish_packet("devices/SD-1/up", b"{}", 1, 0), "malformed"),
    ("topic longer than the packet", b"\x30\x04\x00\x09ab", "malformed"),
    (
        "SUBSCRIBE with flags 0",
        b"\x80" + wire.subscribe_packet(1, [("devices/SD-1/cmd", 1)])[1:],
        "malformed",
    ),
    ("SUBSCRIBE QoS 3", wire.subscribe_packet(1, [("devices/SD-1/cmd", 3)]), "malformed"),
    ("PINGREQ with a body", b"\xc0\x01\x00", "malformed"),
    ("CONNACK from a client", CONNACK_OK, "malformed"),
    ("reserved type 15", b"\xf0\x00", "malformed"),
    (
        "a second CONNECT",
        wire.connect_packet("x", username=None, password=None, clean_session=True, keepalive=0),
        "malformed",
    ),
    ("Remaining Length of 5 bytes", b"\x30\xff\xff\xff\xff\x7f", "malformed"),
    ("a 200 MB packet announced", b"\x30\x80\x80\xe8\x5f", "too_large"),
]


def bare_connect(flags: int = 0x02, payload: bytes = b"\x00\x04SD-1") -> bytes:
    """A 3.1.1 CONNECT with the given flags and payload bytes as they are."""
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + payload
    return bytes([0x10, len(body)]) + body


MALFORMED_CONNECTS: list[tuple[str, bytes]] = [
    ("a PUBLISH first", wire.publish_packet("devices/SD-1/up", b"{}", 0)),
    ("CONNECT with flags in its first byte", b"\x11" + bare_connect()[1:]),
    ("client id longer than the packet", bare_connect(payload=b"\x00\x09SD-1")),
    ("bytes after the payload", bare_connect(payload=b"\x00\x04SD-1\x00")),
    ("will flag without a will", bare_connect(flags=0x06)),
    ("user name flag without one", bare_connect(flags=0x82)),
    ("protocol name cut short", b"\x10\x03\x00\x04M"),
    ("an HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
]


async def test_a_malformed_connect_is_closed_without_an_answer(db: Database, tmp_path: Path) -> None:
    """Anything but a well-formed CONNECT first: closed, counted, nothing sent back."""
    async with broker(db, tmp_path, "SD-1") as (rig, _component, port):
        for what, packet in MALFORMED_CONNECTS:
            before = closed(rig.metrics, "malformed")
            reader, writer = await raw(port)
            writer.write(packet)
            assert await until_closed(reader) == b"", what
            assert closed(rig.metrics, "malformed") == before + 1, what
            writer.close()
        reader, writer = await logged_in(port, rig, "SD-1")
        writer.close()


async def test_a_malformed_packet_closes_the_connection_and_is_counted(db: Database, tmp_path: Path) -> None:
    """A PUBLISH to a wildcard topic holding a PINGREQ gets no PINGRESP: the connection is closed (§4.8)."""
    async with broker(db, tmp_path, "SD-1") as (rig, _component, port):
        for what, packet, reason in MALFORMED:
            before = closed(rig.metrics, reason)
            reader, writer = await logged_in(port, rig, "SD-1")
            writer.write(wire.publish_packet("devices/SD-1/status", b"online", 0))
            await eventually(lambda: online(rig, "SD-1"), "online")
            writer.write(packet + wire.PINGREQ_PACKET)
            answer = await until_closed(reader)
            assert PINGRESP not in answer, f"{what}: the broker read on ({answer!r})"
            assert closed(rig.metrics, reason) == before + 1, what
            # A lost connection: the hub's offline hook, as for any dropped device.
            await eventually(lambda: not online(rig, "SD-1"), f"offline after {what}")
            writer.close()
        reader, writer = await logged_in(port, rig, "SD-1")
        writer.write(wire.publish_packet("devices/SD-1/up", reading(1), 1, 1) + wire.PINGREQ_PACKET)
        assert await asyncio.wait_for(reader.readexactly(6), 10) == b"\x40\x02\x00\x01" + PINGRESP
        await eventually(lambda: accepted(rig.metrics) == 1, "a good uplink after them")
        writer.close()


async def test_a_frozen_device_is_dropped_after_one_and_a_half_keepalives(
    db: Database, tmp_path: Path
) -> None:
    """paho (keep-alive 1 s) frozen by SIGSTOP: disconnected, its will published, offline; its live twin stays."""
    async with broker(db, tmp_path, "SD-1", "SD-2") as (rig, component, port):
        frozen = await start_device(port, rig, "SD-1", keepalive=1)
        alive = await start_device(port, rig, "SD-2", keepalive=1)
        try:
            assert component.broker is not None
            async with rig.ingest.bus.subscribe() as events:
                os.kill(frozen.pid, signal.SIGSTOP)
                await eventually(lambda: not component.broker.connected("SD-1"), "the frozen device dropped")  # type: ignore[union-attr]
                event = await asyncio.wait_for(events.get(), 10)
            assert event["type"] == "offline" and event["device"] == "SD-1" and event["why"] == "last will"
            assert not online(rig, "SD-1")
            assert closed(rig.metrics, "keepalive") == 1
            assert component.broker.connected("SD-2"), "a device that pings was dropped too"
        finally:
            for proc in (frozen, alive):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.kill()
                await proc.wait()


async def start_device(port: int, rig: Rig, serial: str, keepalive: int) -> asyncio.subprocess.Process:
    """tests/ingest/paho_device.py in its own process, once it says it is online."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.ingest.paho_device", "--port", str(port), "--serial", serial),
        *("--keepalive", str(keepalive)),
        cwd=ROOT,
        env={**os.environ, "DEVICE_PASSWORD": rig.passwords[serial]},
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    assert line == b"online\n", line
    return proc
