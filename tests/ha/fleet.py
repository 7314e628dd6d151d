"""QoS 1 devices on raw sockets for the failover tests and bench: numbered uplinks kept until the broker acknowledged them.

Each device is one MQTT 3.1.1 connection to one of the brokers of a list. Every uplink carries a
sequence number; it stays in the device's window until its PUBACK arrives, and when the connection
breaks the device connects to the next broker of the list and sends what was not acknowledged again
(DUP), as a real QoS 1 client does. ``acked`` is then exactly what the broker took responsibility for:
the set a failover must not lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hub.ingest import mqtt_wire as wire

__all__ = ["Fleet", "QosDevice"]

_DUP = 0x08
_WINDOW = 32  # unacknowledged uplinks per device before it waits


@dataclass
class QosDevice:
    """One device: ``publish`` numbered uplinks, ``run`` keeps the connection (failing over along ``servers``)."""

    serial: str
    servers: Sequence[tuple[str, int]]
    password: str | None = None
    first: int = 0  # index of the broker to start with
    window: int = _WINDOW
    acked: dict[int, float] = field(default_factory=dict)  # seq -> when the PUBACK came (perf_counter)
    sent_at: dict[int, float] = field(default_factory=dict)  # seq -> first send (perf_counter)
    reconnects: int = 0

    def __post_init__(self) -> None:
        self.topic = f"devices/{self.serial}/up"
        self._pending: dict[int, tuple[int, bytes]] = {}  # packet id -> (seq, payload)
        self._next_id = 0
        self._writer: asyncio.StreamWriter | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._up = asyncio.Event()
        self._broker = self.first % len(self.servers)

    @property
    def unacked(self) -> int:
        """Uplinks sent and not acknowledged yet."""
        return len(self._pending)

    @property
    def broker(self) -> tuple[str, int]:
        """The broker this device uses now."""
        return self.servers[self._broker]

    async def publish(self, seq: int, payload: bytes) -> None:
        """Send one uplink (waiting while the window is full); it is kept until acknowledged."""
        while len(self._pending) >= self.window:
            self._room.clear()
            await self._room.wait()
        self._next_id = self._next_id % 0xFFFF + 1
        while self._next_id in self._pending:
            self._next_id = self._next_id % 0xFFFF + 1
        self._pending[self._next_id] = (seq, payload)
        self.sent_at.setdefault(seq, time.perf_counter())
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(wire.publish_packet(self.topic, payload, 1, self._next_id))

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop``: on a lost connection, the next broker, and resend what was pending."""
        while not stop.is_set():
            host, port = self.servers[self._broker]
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                await self._session(host, port, stop)
            self._writer, self._up = None, asyncio.Event()
            if stop.is_set():
                return
            self.reconnects += 1
            self._broker = (self._broker + 1) % len(self.servers)
            await asyncio.sleep(0.05)

    async def _session(self, host: str, port: int, stop: asyncio.Event) -> None:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(host, port)
        try:
            await self._serve(reader, writer, stop)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        user = self.serial if self.password is not None else None
        writer.write(
            wire.connect_packet(
                self.serial, username=user, password=self.password, clean_session=True, keepalive=0
            )
        )
        async with asyncio.timeout(10):
            head = await reader.readexactly(4)
        if head[0] >> 4 != wire.CONNACK or head[3] != 0:
            raise ConnectionError(f"{self.serial}: CONNACK {head!r}")
        self._writer = writer
        self._up.set()
        # What the last broker never acknowledged goes again, flagged as a duplicate.
        for packet_id, (_seq, payload) in list(self._pending.items()):
            frame = bytearray(wire.publish_packet(self.topic, payload, 1, packet_id))
            frame[0] |= _DUP
            writer.write(bytes(frame))
        packets = wire.PacketReader()
        closing = asyncio.ensure_future(stop.wait())
        try:
            while True:
                read = asyncio.ensure_future(reader.read(65536))
                done, _ = await asyncio.wait({read, closing}, return_when=asyncio.FIRST_COMPLETED)
                if closing in done:
                    read.cancel()
                    writer.write(wire.DISCONNECT_PACKET)
                    return
                chunk = read.result()
                if not chunk:
                    raise ConnectionError("closed by the broker")
                for packet in packets.feed(chunk):
                    if len(packet) == 3 and packet[0] == wire.PUBACK:
                        self._acked(int.from_bytes(packet[2][:2], "big"))
        finally:
            closing.cancel()

    def _acked(self, packet_id: int) -> None:
        entry = self._pending.pop(packet_id, None)
        if entry is not None:
            self.acked.setdefault(entry[0], time.perf_counter())
            self._room.set()


class Fleet:
    """Devices publishing numbered uplinks at a total rate; ``acked`` per serial is what must be stored."""

    def __init__(
        self,
        devices: Sequence[QosDevice],
        payload: Callable[[str, int], bytes],
    ) -> None:
        self.devices = list(devices)
        self.payload = payload
        self.stop = asyncio.Event()
        self.seq = 0  # the last sequence number every device has been given
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 30.0) -> None:
        """Connect every device (each to its own first broker)."""
        self._tasks = [asyncio.create_task(d.run(self.stop), name=f"device-{d.serial}") for d in self.devices]
        async with asyncio.timeout(timeout):
            for device in self.devices:
                await device._up.wait()

    async def send(self, rate: float, seconds: float) -> None:
        """Publish at ``rate`` uplinks a second in all, round-robin over the devices, for ``seconds``."""
        per_round = len(self.devices)
        start, done = time.perf_counter(), 0
        while (elapsed := time.perf_counter() - start) < seconds:
            owed = int(elapsed * rate) - done
            while owed >= per_round:
                self.seq += 1
                await asyncio.gather(
                    *(d.publish(self.seq, self.payload(d.serial, self.seq)) for d in self.devices)
                )
                owed -= per_round
                done += per_round
            await asyncio.sleep(0.002)

    async def settle(self, timeout: float) -> bool:
        """Wait until nothing is pending (every uplink acknowledged); False on timeout."""
        deadline = time.monotonic() + timeout
        while any(d.unacked for d in self.devices):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        """Disconnect every device."""
        self.stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 5)

    def acked(self) -> dict[str, set[int]]:
        """Per serial, every sequence number the broker acknowledged."""
        return {d.serial: set(d.acked) for d in self.devices}

    @property
    def reconnects(self) -> int:
        """Connections the devices had to make again (a broker node went away)."""
        return sum(d.reconnects for d in self.devices)
