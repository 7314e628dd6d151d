"""Bench child: a fleet of simulated devices, one MQTT 3.1.1 connection each, publishing pre-encoded uplinks.

Raw sockets rather than paho: a thousand paho clients would need a thousand network loops, and the
load generator must not be what bounds the figure more than it has to. Run by bench/ingest.py:
``_ingest_load.py SPEC.json``; it connects, emits ``connected``, waits for ``go``, publishes, makes sure the
broker has handled every packet (a PINGREQ after the last publish; PUBACKs too at QoS 1), emits ``sent``,
and disconnects on ``close`` or end of input.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _ingest_proc import emit, read_commands

from hub.ingest.topics import up_topic
from hub.simulate.traffic import SimDevice, next_uplink

__all__ = ["Conn", "connect_packet", "publish_packet"]

_CHUNK = 10  # publishes per write: fewer syscalls, still interleaved across devices
_PINGREQ, _DISCONNECT = b"\xc0\x00", b"\xe0\x00"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str, username: str, password: str, keepalive: int = 600) -> bytes:
    """CONNECT, clean session, with username and password."""
    body = _str("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", keepalive)
    body += _str(client_id) + _str(username) + _str(password)
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: str, payload: bytes, qos: int, packet_id: int) -> bytes:
    """PUBLISH at QoS 0 or 1."""
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _varint(len(body)) + body


class Conn:
    """One device's connection: counts what the broker sends back (CONNACK, PUBACK, PINGRESP)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pong = asyncio.Event()
        self.acks = 0
        self.task = asyncio.create_task(self._read(), name="device-reader")

    async def _read(self) -> None:
        try:
            while True:
                head = (await self.reader.readexactly(1))[0]
                length, shift = 0, 0
                while True:
                    byte = (await self.reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await self.reader.readexactly(length) if length else b""
                kind = head & 0xF0
                if kind == 0x20 and not self.connack.done():
                    self.connack.set_result(body[1])
                elif kind == 0x40:
                    self.acks += 1
                elif kind == 0xD0:
                    self.pong.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            if not self.connack.done():
                self.connack.set_result(-1)
            self.pong.set()


async def _connect(host: str, port: int, serial: str, password: str, gate: asyncio.Semaphore) -> Conn | None:
    async with gate:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return None
        conn = Conn(reader, writer)
        writer.write(connect_packet(serial, serial, password))
        try:
            code = await asyncio.wait_for(conn.connack, 30)
        except TimeoutError:
            code = -1
        if code != 0:
            writer.close()
            return None
        return conn


async def _publish(conn: Conn, packets: list[bytes]) -> None:
    for i in range(0, len(packets), _CHUNK):
        conn.writer.write(b"".join(packets[i : i + _CHUNK]))
        await conn.writer.drain()
    conn.pong.clear()
    conn.writer.write(_PINGREQ)  # answered after everything before it was handled
    await conn.writer.drain()
    await conn.pong.wait()


def _packets(spec: dict[str, object], serial: str, kind: str, rng: random.Random) -> list[bytes]:
    per_device, seq_from, ts_base = int(spec["per_device"]), int(spec["seq_from"]), int(spec["ts_base"])  # type: ignore[call-overload]
    qos, fmt = int(spec["qos"]), str(spec["fmt"])  # type: ignore[call-overload]
    dev = SimDevice(serial, kind, "", seq=seq_from)
    topic = up_topic(serial)
    out = []
    for n in range(per_device):
        payload = next_uplink(dev, rng, ts_base + dev.seq + 1, fmt)  # type: ignore[arg-type]
        out.append(publish_packet(topic, payload, qos, n % 65535 + 1))
    return out


async def main(spec: dict[str, Any]) -> None:
    """Connect every device, publish on ``go``, disconnect on ``close``."""
    host, port, qos = spec["host"], int(spec["port"]), int(spec["qos"])
    rng = random.Random(spec["seq_from"])
    devices = spec["devices"]
    packets = [_packets(spec, serial, kind, rng) for serial, kind, _pw in devices]
    gate = asyncio.Semaphore(64)
    conns = await asyncio.gather(*(_connect(host, port, s, pw, gate) for s, _k, pw in devices))
    live = [(c, p) for c, p in zip(conns, packets, strict=True) if c is not None]
    emit("connected", ok=len(live), failed=len(devices) - len(live))
    commands = await read_commands()
    while (line := await commands.readline()) and json.loads(line)["cmd"] != "go":
        pass
    t0 = time.monotonic()
    await asyncio.gather(*(_publish(c, p) for c, p in live))
    if qos:
        while sum(c.acks for c, _p in live) < sum(len(p) for _c, p in live):
            if all(c.task.done() for c, _p in live):
                break
            await asyncio.sleep(0.01)
    t1 = time.monotonic()
    emit("sent", t0=t0, t1=t1, messages=sum(len(p) for _c, p in live), acks=sum(c.acks for c, _p in live))
    while (line := await commands.readline()) and json.loads(line)["cmd"] != "close":
        pass
    for conn, _p in live:
        if not conn.writer.is_closing():
            conn.writer.write(_DISCONNECT)
            conn.writer.close()
        conn.task.cancel()
    emit("closed")


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
