"""One MQTT 3.1.1 connection of the hub to a broker, as an asyncio protocol that hands PUBLISHes over per chunk.

Every PUBLISH goes to the ``Inbound`` in order, at most ``per_turn`` in one turn of the event loop; QoS 1
ones are acknowledged once it has taken them, all acks of a turn in one write. While the rest of a chunk
waits for its turn, or the Inbound cannot take one at once (a registry lookup) or asks to wait
(``congestion``), reading pauses, so the backlog stays in the broker.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from hub.errors import TransportError
from hub.ingest import mqtt_wire as wire
from hub.lifecycle import TaskSet

__all__ = ["Inbound", "MqttConnection"]

# Messages handled in one turn of the event loop (~2 ms of ingest): whatever else is ready, such as
# the statements of an alarm's case, waits for at most one such turn instead of a whole 256 KB read.
MESSAGES_PER_TURN = 128


class Inbound(Protocol):
    """Where a connection's PUBLISHes go."""

    def take(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Handle one message now; False when it needs ``take_later`` (an await) first."""

    async def take_later(self, topic: str, payload: bytes, retain: bool) -> None:
        """Handle one message that could not be taken at once."""

    def congestion(self) -> Awaitable[None] | None:
        """None when more may be read now; otherwise what to await before reading on."""


class _Protocol(asyncio.Protocol):
    """Parses, dispatches and acknowledges; resolves the futures of CONNACK, SUBACK and PUBACK."""

    def __init__(self, inbound: Inbound, tasks: TaskSet, per_turn: int) -> None:
        self.inbound = inbound
        self.tasks = tasks
        self.per_turn = per_turn
        self.reader = wire.PacketReader()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[tuple[bool, int]] = self.loop.create_future()
        self.waiting: dict[int, asyncio.Future[bytes]] = {}  # packet id -> SUBACK / PUBACK body
        self.closed: asyncio.Future[str] = self.loop.create_future()
        self.last_heard = self.loop.time()
        self.backlog: deque[wire.Publish | wire.Packet] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        reason = str(exc) if exc else "connection closed by the broker"
        if not self.closed.done():
            self.closed.set_result(reason)
        futures: list[asyncio.Future[Any]] = [self.connack, *self.waiting.values()]
        for future in futures:
            if not future.done():
                future.set_exception(TransportError(reason))
        self.waiting.clear()

    def abort(self, reason: str) -> None:
        """Drop the connection, naming why."""
        if not self.closed.done():
            self.closed.set_result(reason)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.loop.time()
        try:
            packets = self.reader.feed(data)
        except TransportError as exc:
            self.abort(f"protocol error: {exc.message}")
            return
        waiting = bool(self.backlog)  # a turn or a lookup is pending: these queue behind it, in order
        self.backlog.extend(packets)
        if not waiting:
            self._turn()

    def _turn(self) -> None:
        """Handle up to ``per_turn`` messages in order, acknowledge them in one write, then plan the next turn."""
        if self.closed.done():
            return  # unacknowledged QoS 1 messages come again on the next session
        backlog, take, budget = self.backlog, self.inbound.take, self.per_turn
        acks: list[bytes] = []
        while backlog:
            packet = backlog[0]
            if len(packet) == 5:
                if not budget:
                    break
                topic, payload, qos, packet_id, retain = packet  # type: ignore[misc]
                if not take(topic, payload, retain):
                    self._write(acks)
                    self._pause()
                    self.tasks.spawn(self._take_later(), name="mqtt-inbound-lookup")
                    return
                budget -= 1
                if qos:
                    acks.append(wire.puback_packet(packet_id))
            else:
                self._control(packet)  # type: ignore[arg-type]
            backlog.popleft()
        self._write(acks)
        wait = self.inbound.congestion()
        if wait is not None:
            # The backlog stays in the broker (QoS 1 sessions) instead of in the hub's memory.
            self._pause()
            self.tasks.spawn(self._turn_after(wait), name="mqtt-inbound-wait")
        elif backlog:
            # The rest goes behind the callbacks ready now (an alarm's case, a webhook), not ahead of them.
            self._pause()
            self.loop.call_soon(self._turn)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    async def _take_later(self) -> None:
        """Handle the first message of the backlog, which needs an await (a registry lookup), then go on."""
        topic, payload, qos, packet_id, retain = self.backlog[0]  # type: ignore[misc]
        await self.inbound.take_later(topic, payload, retain)
        if qos:
            self._write([wire.puback_packet(packet_id)])
        # Removed only once handled: chunks read meanwhile are appended behind it.
        self.backlog.popleft()
        self._turn()

    async def _turn_after(self, wait: Awaitable[None]) -> None:
        await wait
        self._turn()

    def _pause(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def _write(self, packets: list[bytes]) -> None:
        if packets and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(packets))

    def _control(self, packet: wire.Packet) -> None:
        kind, _flags, body = packet
        if kind == wire.CONNACK and len(body) == 2 and not self.connack.done():
            self.connack.set_result((bool(body[0] & 1), body[1]))
        elif kind in (wire.SUBACK, wire.PUBACK) and len(body) >= 2:
            future = self.waiting.pop(int.from_bytes(body[:2], "big"), None)
            if future is not None and not future.done():
                future.set_result(body[2:])
        elif kind != wire.PINGRESP:
            self.abort(f"protocol error: unexpected packet type {kind} from the broker")


class MqttConnection:
    """A connected, authenticated session; ``closed`` resolves with the reason it ended."""

    def __init__(self, protocol: _Protocol, tasks: TaskSet, keepalive: int) -> None:
        self._protocol = protocol
        self._tasks = tasks
        self._next_id = 0
        self.session_present = False
        if keepalive:
            tasks.spawn(self._keep_alive(keepalive), name="mqtt-keepalive")

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        inbound: Inbound,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        clean_session: bool = False,
        keepalive: int = 30,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 10.0,
        per_turn: int = MESSAGES_PER_TURN,
    ) -> MqttConnection:
        """Connect and wait for the CONNACK; TransportError naming what went wrong."""
        loop, tasks = asyncio.get_running_loop(), TaskSet()
        where = f"{host}:{port}"
        try:
            async with asyncio.timeout(timeout):
                # server_hostname: the name checked against the broker's certificate, when not ``host``.
                _, protocol = await loop.create_connection(
                    lambda: _Protocol(inbound, tasks, per_turn),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=server_hostname if tls is not None else None,
                )
        except (OSError, TimeoutError) as exc:
            raise TransportError(
                f"cannot connect to the MQTT broker at {where}: {exc or 'timed out'}"
            ) from exc
        connection = cls(protocol, tasks, keepalive)
        try:
            packet = wire.connect_packet(
                client_id,
                username=username,
                password=password,
                clean_session=clean_session,
                keepalive=keepalive,
            )
            assert protocol.transport is not None
            protocol.transport.write(packet)
            async with asyncio.timeout(timeout):
                present, code = await protocol.connack
            if code:
                why = wire.CONNACK_CODES.get(code, f"return code {code}")
                raise TransportError(f"MQTT broker at {where} refused the connection: {why}")
        except BaseException as exc:
            await connection.close(send_disconnect=False)
            if isinstance(exc, TimeoutError):
                raise TransportError(f"no CONNACK from the MQTT broker at {where}") from exc
            raise
        connection.session_present = present
        return connection

    @property
    def closed(self) -> asyncio.Future[str]:
        """Resolves with the reason once the connection has ended."""
        return self._protocol.closed

    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def _send(self, packet: bytes, packet_id: int | None = None) -> Awaitable[bytes] | None:
        transport = self._protocol.transport
        if transport is None or transport.is_closing():
            raise TransportError("not connected to the MQTT broker")
        future = None
        if packet_id is not None:
            future = self._protocol.waiting[packet_id] = asyncio.get_running_loop().create_future()
        transport.write(packet)
        return future

    async def subscribe(
        self, filters: Sequence[tuple[str, int]], *, still_busy: Callable[[], bool]
    ) -> list[int]:
        """Subscribe and return the granted QoS per filter; waits as long as ``still_busy`` says messages flow.

        On a persistent session the broker sends what it stored before it answers, so the SUBACK can come
        after a whole backlog; a fixed timeout would drop the connection mid-drain.
        """
        packet_id = self._packet_id()
        pending = self._send(wire.subscribe_packet(packet_id, filters), packet_id)
        assert pending is not None
        future = asyncio.ensure_future(pending)
        while True:
            done, _ = await asyncio.wait({future}, timeout=10.0)
            if done:
                granted = list(future.result())
                if 0x80 in granted:
                    refused = [f for (f, _q), g in zip(filters, granted, strict=False) if g == 0x80]
                    raise TransportError(f"MQTT broker refused the subscription to {', '.join(refused)}")
                return granted
            if not still_busy():
                future.cancel()
                raise TransportError("no SUBACK and no message for 10 s")

    async def publish(self, topic: str, payload: bytes, qos: int, *, timeout: float = 10.0) -> None:
        """Publish; at QoS 1 wait for the broker's PUBACK."""
        if not qos:
            self._send(wire.publish_packet(topic, payload, 0))
            return
        packet_id = self._packet_id()
        acked = self._send(wire.publish_packet(topic, payload, 1, packet_id), packet_id)
        assert acked is not None
        try:
            async with asyncio.timeout(timeout):
                await acked
        except TimeoutError as exc:
            self._protocol.waiting.pop(packet_id, None)
            raise TransportError(f"no PUBACK for {topic} within {timeout:.0f} s") from exc

    async def _keep_alive(self, keepalive: int) -> None:
        """PINGREQ at half the keep-alive; a broker silent for 1.5 × keep-alive is gone."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(keepalive / 2)
            if loop.time() - self._protocol.last_heard > keepalive * 1.5:
                self._protocol.abort(f"no answer from the broker for {keepalive * 1.5:.0f} s")
                return
            transport = self._protocol.transport
            if transport is not None and not transport.is_closing():
                transport.write(wire.PINGREQ_PACKET)

    async def close(self, *, send_disconnect: bool = True) -> None:
        """Send DISCONNECT (the broker keeps a persistent session and drops the will) and close."""
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            if send_disconnect:
                transport.write(wire.DISCONNECT_PACKET)
            transport.close()
        if not self._protocol.closed.done():
            self._protocol.closed.set_result("closed by the hub")
        await self._tasks.stop(2.0)
