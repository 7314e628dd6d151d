"""The embedded broker's connection limits, applied to each TCP connection before amqtt reads from it.

amqtt 0.12 on its own (``Broker.stream_connected``) waits for ever for a first packet, takes any number of
connections (its ``max_connections`` queues them instead of refusing), parses an MQTT 5 CONNECT as 3.1.1
and then waits for bytes that never come, never enforces the keep-alive (its read timeout does nothing),
and reads on after refusing part of a packet. Here, in ``GuardedBroker.stream_connected``:

- a connection over ``HUB_MQTT_MAX_CONNECTIONS`` is closed at once;
- the CONNECT must arrive whole within ``HUB_MQTT_CONNECT_TIMEOUT``; one of another protocol level is
  answered with CONNACK 0x01 (unacceptable protocol version) and closed;
- amqtt is then fed whole packets, each checked first (hub/ingest/mqtt_frames.py): a malformed one closes
  the connection (MQTT 3.1.1 §4.8), and so does 1.5 × the keep-alive without a packet (§3.1.2.10).

Closing looks to amqtt like a lost connection, so the last will and the hub's offline hook follow as for
any dropped device. Every closure is counted in ``iothub_mqtt_closed_total{reason}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker

from hub.config import MqttSettings
from hub.ingest.mqtt_frames import (
    CONNACK_BAD_VERSION,
    CONNECT,
    Malformed,
    check_client_packet,
    check_connect,
    connect_header,
    remaining_length,
)
from hub.metrics import HubMetrics

__all__ = ["ConnectionGuard", "GuardedBroker", "GuardedReader"]

log = logging.getLogger(__name__)

# The largest legitimate packet: a PUBLISH of a payload at the size limit under the longest topic
# (65,535 bytes + its length) with a packet identifier. A larger payload under that is dropped and
# counted (``too_large``) with the connection kept; a larger packet can only be an attack.
_TOPIC_ROOM = 65_535 + 4
REASONS = ("connect_timeout", "keepalive", "malformed", "max_connections", "protocol_version", "too_large")


class TooLarge(Malformed):
    """A packet over the broker's packet size limit."""


class ConnectionGuard:
    """The limits from the settings, the count of open connections, and the closure counters."""

    def __init__(self, settings: MqttSettings, metrics: HubMetrics) -> None:
        self.connect_timeout = settings.connect_timeout
        self.max_connections = settings.max_connections
        self.max_packet = settings.max_payload + _TOPIC_ROOM
        self.open = 0
        self._gauge = metrics.mqtt_connections
        self._closed = {reason: metrics.mqtt_closed.labels(reason) for reason in REASONS}
        metrics.mqtt_connections_limit.set(self.max_connections)
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and self.max_connections + 100 > soft:
            log.warning(
                "HUB_MQTT_MAX_CONNECTIONS=%d is above what the file limit allows (ulimit -n %d, less the "
                "hub's own files): connections past it fail with 'too many open files'",
                self.max_connections,
                soft,
            )

    def admit(self) -> bool:
        """Count a new connection in; False (counted) when the listener is full."""
        if self.open >= self.max_connections:
            self._closed["max_connections"].inc()
            return False
        self.open += 1
        self._gauge.set(self.open)
        return True

    def release(self) -> None:
        """Count a connection out."""
        self.open -= 1
        self._gauge.set(self.open)

    def count(self, reason: str) -> None:
        """Count a connection the guard closed."""
        self._closed[reason].inc()


class GuardedReader(ReaderAdapter):  # type: ignore[misc]
    """amqtt's reader: the stream cut into whole packets, each checked before amqtt parses it."""

    def __init__(
        self, stream: asyncio.StreamReader, writer: asyncio.StreamWriter, guard: ConnectionGuard
    ) -> None:
        self._stream = stream
        self._transport = writer.transport
        self._guard = guard
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        self._loop = asyncio.get_running_loop()
        self._head = bytearray()  # the fixed header being read: kept if amqtt cancels a read
        self._data = b""  # checked bytes amqtt has not read yet
        self._pos = 0
        self._grace = 0.0  # 1.5 × the CONNECT's keep-alive; 0: keep-alive 0, no limit
        self._last = self._loop.time()  # when the last whole packet arrived
        self._timer: asyncio.Handle | None = None
        self.ended = False

    async def _frame(self) -> tuple[bytes, bytes]:
        """The next whole packet's fixed header and body; safe to cancel between and during reads."""
        stream, head = self._stream, self._head
        while (length := remaining_length(head) if len(head) >= 2 else None) is None:
            head += await stream.readexactly(1 if head else 2)
        if length > self._guard.max_packet:
            raise TooLarge(f"a packet of {length} bytes (the limit is {self._guard.max_packet})")
        body = await stream.readexactly(length) if length else b""
        self._head = bytearray()
        return bytes(head), body

    def _close(self, reason: str, detail: str, *, flush: bool = False) -> None:
        """End the connection, counted; amqtt then reads the end of the stream."""
        self.end()
        self._guard.count(reason)
        log.info("MQTT: closed the connection from %s (%s: %s)", self.peer, reason, detail)
        if flush:
            self._transport.close()
        else:
            self._transport.abort()

    def end(self) -> None:
        """The connection is over: stop watching its keep-alive."""
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def read_connect(self) -> bool:
        """Read the CONNECT within the connect timeout and check its protocol level; False: closed."""
        timeout = self._guard.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                self._head += await self._stream.readexactly(1)
                if self._head[0] != CONNECT << 4:  # not MQTT, or not a CONNECT: no need to read on
                    raise Malformed(f"first byte {self._head[0]:#04x} where a CONNECT belongs")
                head, body = await self._frame()
            name, level, keepalive = connect_header(body)
            if (name, level) != ("MQTT", 4):
                # 3.1.1 §3.1.2.2; MQTT 5 clients read this CONNACK too (mosquitto_pub, paho).
                self._transport.write(CONNACK_BAD_VERSION)
                self._close(
                    "protocol_version", f"{name!r} level {level}; this broker speaks MQTT 3.1.1", flush=True
                )
                return False
            check_connect(body)
        except TimeoutError:
            self._close("connect_timeout", f"no whole CONNECT within {timeout:g} s")
            return False
        except Malformed as exc:
            self._close("too_large" if isinstance(exc, TooLarge) else "malformed", str(exc))
            return False
        except (EOFError, OSError):
            self.end()  # the client left before its CONNECT
            return False
        self._data, self._last = head + body, self._loop.time()
        if keepalive:
            self._grace = keepalive * 1.5
            self._timer = self._loop.call_at(self._last + self._grace, self._expire)
        return True

    def _expire(self, confirm: bool = False) -> None:
        """The keep-alive timer: close a connection silent for 1.5 × its keep-alive, else wait on.

        The timer is not moved at every packet (that cost more than the rest of the guard): it fires at
        the earliest deadline and re-arms from the last packet. A silent connection is closed only one
        turn of the loop later, so that data received in the same turn as the timer is read first.
        """
        self._timer = None
        if self.ended or self._transport.is_closing():
            return
        due = self._last + self._grace
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._expire)
        elif confirm:
            self._close("keepalive", f"no packet for {self._grace:g} s, 1.5 × its keep-alive")
        else:
            self._timer = self._loop.call_soon(self._expire, True)

    async def _next(self) -> bool:
        """Read and check one more packet; False once the connection is over."""
        if self.ended:
            return False
        try:
            head, body = await self._frame()
            check_client_packet(head[0] >> 4, head[0] & 0x0F, body)
        except Malformed as exc:
            self._close("too_large" if isinstance(exc, TooLarge) else "malformed", str(exc))
            return False
        except (EOFError, OSError):
            if not self.ended:
                self.end()  # closed by the client or lost: amqtt reads the end of the stream
            return False
        self._last = self._loop.time()
        data = head + body
        self._data = self._data[self._pos :] + data if self._pos < len(self._data) else data
        self._pos = 0
        return True

    async def read(self, n: int = -1) -> bytes:
        """``n`` bytes of checked packets (what is buffered for n < 0); b"" once the connection is over."""
        while len(self._data) - self._pos < max(n, 1):
            if not await self._next():
                return b""
        start = self._pos
        self._pos = len(self._data) if n < 0 else start + n
        chunk = self._data[start : self._pos]
        if self._pos == len(self._data):
            self._data, self._pos = b"", 0
        return chunk

    def feed_eof(self) -> None:
        """Mark the end of the stream."""
        self._stream.feed_eof()


class ClosingWriter(StreamWriterAdapter):  # type: ignore[misc]
    """amqtt's writer, whose close neither raises on a dead peer nor waits for ever on a frozen one."""

    is_closed: bool

    async def close(self) -> None:
        """Flush for at most a second, then close (or abort what cannot be flushed)."""
        if self.is_closed:
            return
        self.is_closed = True
        writer: asyncio.StreamWriter = self._writer
        try:
            async with asyncio.timeout(1.0):
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            writer.close()
        except (OSError, TimeoutError):
            writer.transport.abort()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class GuardedBroker(Broker):  # type: ignore[misc]
    """amqtt's Broker with every TCP connection passed through a ``ConnectionGuard`` first."""

    guard: ConnectionGuard | None = None

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        guard = self.guard
        if guard is None:
            await super().stream_connected(reader, writer, listener_name)
            return
        if not guard.admit():
            log.info("MQTT: refused a connection: %d open, the limit", guard.open)
            writer.transport.abort()
            return
        packets = GuardedReader(reader, writer, guard)
        try:
            if await packets.read_connect():
                await self._client_connected(listener_name, packets, ClosingWriter(writer))
        except OSError as exc:
            log.info("MQTT: the connection from %s failed: %s", packets.peer, exc)
        finally:
            packets.end()
            guard.release()
            if not writer.transport.is_closing():
                writer.transport.abort()
