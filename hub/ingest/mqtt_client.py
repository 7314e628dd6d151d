"""MQTT ingest as a client of an external broker (Mosquitto, EMQX): persistent QoS 1 session, reconnect with backoff.

The connection is the hub's own (hub/ingest/mqtt_session.py): draining 100 k queued messages from
Mosquitto, aiomqtt (paho underneath) spent as much CPU reading packets as the whole pipeline behind it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from hub.config import MqttSettings
from hub.errors import TransportError
from hub.ingest.commands import CommandRecord, Commands
from hub.ingest.directory import DeviceEntry
from hub.ingest.mqtt_auth import TRANSPORT, DeviceGate
from hub.ingest.mqtt_probe import SharedProbe
from hub.ingest.mqtt_session import MqttConnection
from hub.ingest.mqtt_tls import broker_tls, tls_failure
from hub.ingest.service import IngestService
from hub.ingest.topics import DeviceTopic, hub_subscriptions, parse
from hub.lifecycle import TaskSet
from hub.priority import UrgentLane

__all__ = ["ExternalMqtt"]

log = logging.getLogger(__name__)
# Parsed topics are cached: a fleet uses a few topics per device, and parsing costs a split and an object.
_ROUTES_MAX = 100_000
# Reading pauses while the telemetry store has this many points queued, until half are written: a few
# InfluxDB batches keep its writer busy, and more would only move the broker's backlog into memory.
HIGH_WATER = 20_000


class ExternalMqtt:
    """Subscribes to every device's topics on an external broker and feeds the pipeline; sends commands."""

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        ingest: IngestService,
        clock: Callable[[], float],
        *,
        command_timeout: float = 30.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        keepalive: int = 30,
        high_water: int = HIGH_WATER,
        lane: UrgentLane | None = None,
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.commands = Commands(
            ingest.directory, ingest.pipeline, clock, timeout=command_timeout, qos=settings.qos
        )
        # Device authentication is the broker's; the gate still checks serial, state, ACL and size.
        self.gate = DeviceGate(
            ingest.directory, ingest.pipeline, self.commands, max_payload=settings.max_payload
        )
        self.backoff = backoff
        self.keepalive = keepalive
        self.high_water = high_water
        self.lane = lane
        self.connected = asyncio.Event()
        self.connects = 0
        self.received = 0
        self.paused = 0  # times reading paused for the store (backpressure)
        self.last_error: str | None = None
        # The broker (cluster node) in use, an index into settings.brokers; a lost one hands over to the next.
        self.broker = 0
        self._connection: MqttConnection | None = None
        # HA: whether this node still holds the lease, asked for every message (hub/ha); None: single node.
        self.fence: Callable[[], bool] | None = None
        self._routes: dict[str, DeviceTopic | None] = {}
        self._tasks = TaskSet()
        # With a shared group, each connection proves first that the broker delivers through $share.
        self.probe = (
            SharedProbe(
                settings.shared_group,
                settings.client_id,
                f"{settings.host}:{settings.port}",
                settings.shared_probe_timeout,
            )
            if settings.shared_group
            else None
        )

    async def start(self) -> None:
        """Start connecting in the background; ``connected`` is set once subscribed."""
        self.commands.publish = self._publish
        self._tasks.spawn(self._run(), name="mqtt-client")

    async def stop(self) -> None:
        """Disconnect; the broker keeps the session and queues QoS 1 messages until the next start."""
        self.commands.publish = None
        await self._tasks.stop(5.0)

    @property
    def where(self) -> str:
        """The broker in use (or being tried), as host:port."""
        host, port = self.settings.brokers[self.broker]
        return f"{host}:{port}"

    async def health(self) -> tuple[bool, str]:
        """Connected and subscribed, or why not."""
        where = self.where
        if self.connected.is_set():
            return True, f"subscribed at {where}, {self.received} messages"
        return False, f"connecting to {where}" + (f" ({self.last_error})" if self.last_error else "")

    async def send_command(
        self, serial: str, name: str, params: dict[str, Any] | None = None
    ) -> CommandRecord:
        """Publish a command to a device through the broker."""
        return await self.commands.send(serial, name, params)

    @functools.cached_property
    def _tls(self) -> ssl.SSLContext | None:
        """The broker's TLS context, built at the first connect; a failure is retried at the next."""
        return broker_tls(self.settings) if self.settings.tls else None

    async def _connect(self) -> MqttConnection:
        s = self.settings
        tls = self._tls
        host, port = s.brokers[self.broker]
        try:
            return await MqttConnection.open(
                host,
                port,
                self,
                client_id=s.client_id,
                username=s.username,
                password=s.password.get_secret_value() if s.password else None,
                # A persistent session: the broker queues QoS 1 uplinks while the hub is down.
                clean_session=False,
                keepalive=self.keepalive,
                tls=tls,
                server_hostname=s.tls_server_name if tls is not None else None,
            )
        except TransportError as exc:
            if tls is None:
                raise
            raise TransportError(tls_failure(exc, s, f"{host}:{port}")) from exc

    async def _run(self) -> None:
        """Connect, subscribe, consume; when the broker goes, try the next one of the list, backing off per round."""
        delay = self.backoff[0]
        tried = 0  # brokers tried since the last good connection
        while True:
            connection = None
            try:
                connection = self._connection = await self._connect()
                await self._subscribe(connection)
                self.connects += 1
                self.last_error = None
                self.connected.set()
                delay, tried = self.backoff[0], 0
                log.info("MQTT: subscribed at %s", self.where)
                raise TransportError(await connection.closed)
            except TransportError as exc:
                self.last_error = exc.message
            finally:
                self._connection = None
                self.connected.clear()
                if connection is not None:
                    await connection.close()
            # The next broker of the list at once (a cluster's other node holds the same session); once
            # every one was tried, back off before the next round.
            self.broker, tried = (self.broker + 1) % len(self.settings.brokers), tried + 1
            if tried < len(self.settings.brokers):
                log.warning("MQTT: %s; trying %s", self.last_error, self.where)
                continue
            log.warning("MQTT: %s; reconnecting in %.1fs", self.last_error, delay)
            tried = 0
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff[1])

    async def _subscribe(self, connection: MqttConnection) -> None:
        """Subscribe the hub's filters; with a shared group, prove that the broker delivers through them."""
        qos, probe = self.settings.qos, self.probe
        filters = [(topic, qos) for topic, _shared in hub_subscriptions(self.settings.shared_group)]
        if probe is None:
            await connection.subscribe(filters, still_busy=self._count_changed())
            return
        try:
            await connection.subscribe([*filters, (probe.filter, qos)], still_busy=self._count_changed())
        except TransportError as exc:
            if not exc.message.startswith("MQTT broker refused the subscription"):
                raise
            raise probe.refused(exc) from exc
        await probe.prove(connection, self._count_changed())

    def _count_changed(self) -> Callable[[], bool]:
        """A check that is True when messages arrived since it was last asked."""
        seen = self.received

        def changed() -> bool:
            nonlocal seen
            before, seen = seen, self.received
            return seen != before

        return changed

    def _route(self, topic: str) -> DeviceTopic | None:
        try:
            return self._routes[topic]
        except KeyError:
            if len(self._routes) >= _ROUTES_MAX:
                self._routes.clear()
            parsed = self._routes[topic] = parse(topic)
            return parsed

    def take(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Handle a message as it is read; False when its device must be looked up in the registry first."""
        if self.fence is not None and not self.fence():
            return False  # not ours any more: ``take_later`` holds it, unacknowledged, until the process ends
        parsed = self._route(topic)
        entry = None
        if parsed is not None and parsed.kind != "cmd":
            entry = self.ingest.directory.get(parsed.serial)
            if entry is None and self.ingest.directory.may_exist(parsed.serial):
                return False
        try:
            self._handle(topic, payload, parsed, entry, retain)
        except Exception:
            # One bad message must not end the connection.
            log.exception("MQTT ingest failed on %s", topic[:200])
        return True

    async def take_later(self, topic: str, payload: bytes, retain: bool) -> None:
        """Look the device up, then handle the message."""
        if self.fence is not None and not self.fence():
            await asyncio.Event().wait()  # never: the broker gives the message to the new active instead
        parsed = self._route(topic)
        entry = None
        if parsed is not None:
            directory = self.ingest.directory
            try:
                entry = directory.get(parsed.serial) or await directory.lookup(parsed.serial)
            except Exception:
                log.exception("registry lookup failed for %s", parsed.serial)
        try:
            self._handle(topic, payload, parsed, entry, retain)
        except Exception:
            log.exception("MQTT ingest failed on %s", topic[:200])

    def congestion(self) -> Awaitable[None] | None:
        """Something to await before reading on: urgent work in flight or a store behind; None otherwise."""
        urgent = self.lane.yield_to() if self.lane is not None else None
        if urgent is not None:
            return urgent
        store = self.ingest.pipeline.store
        if store.queued < self.high_water:
            return None
        self.paused += 1
        return store.drained_to(self.high_water // 2)

    def _handle(
        self,
        topic: str,
        payload: bytes,
        parsed: DeviceTopic | None,
        entry: DeviceEntry | None,
        retain: bool = False,
    ) -> None:
        self.received += 1
        pipeline = self.ingest.pipeline
        if parsed is None or parsed.kind == "cmd":
            if parsed is None and self.probe is not None and self.probe.take(topic, payload):
                return  # the shared-subscription probe, never telemetry
            pipeline.refuse(TRANSPORT, "", "acl", f"not a device uplink topic: {topic[:200]}", payload)
            return
        if parsed.kind == "status" and not payload:
            return  # a cleared retained status
        if entry is None:
            pipeline.refuse(TRANSPORT, parsed.serial, "unknown_device", "no device with this serial", payload)
            return
        if not entry.accepting:
            detail = f"credentials revoked or device {entry.state}"
            pipeline.refuse(TRANSPORT, parsed.serial, "revoked", detail, payload, entry=entry)
            return
        # A retained message reaches the hub at (re)subscribe: an old birth, not a device connecting now.
        self.gate.deliver(entry, parsed, payload, retained=retain)

    async def _publish(self, topic: str, payload: bytes, qos: int) -> None:
        connection = self._connection
        if connection is None:
            raise TransportError(f"not connected to the MQTT broker at {self.where}")
        try:
            await connection.publish(topic, payload, qos)
        except TransportError as exc:
            raise TransportError(f"MQTT publish on {topic} failed: {exc.message}") from exc
