"""MQTT ingest through the embedded amqtt broker: registry auth and ACL plug-ins, uplinks taken in-process.

Where the hook sits, and why there (amqtt 0.12, ``amqtt/broker.py``):

- ``_handle_message_delivery`` is where a session's PUBLISH leaves its protocol handler. amqtt would then
  fire ``broker_message_received`` (one task per plug-in), run the topic plug-ins (one more task each),
  fire ``broker_message_broadcast`` and queue the message for ``_broadcast_loop``, which spawns a task per
  message and matches the topic against *every* subscription filter: one per connected device, since each
  subscribes to its own command topic. ``HubBroker`` overrides that method: the gate checks the ACL and the
  pipeline decodes inline, in the session's own loop (so a slow hub slows the sender, not memory), and
  nothing is broadcast, because no client may subscribe to another device's uplinks anyway.
- ``_initialize_client_session`` deletes (clean session) or takes over (persistent session) the session
  named by the CONNECT's client id *before* amqtt authenticates: anyone could kick a device off. The
  override authenticates first, and the gate requires client id == serial.
- A last will reaches ``_broadcast_message`` with the dying session; the override hands it to the gate.
- Connection limits, the CONNECT's protocol level, keep-alive and packet checks come first, in
  ``GuardedBroker.stream_connected`` (hub/ingest/mqtt_guard.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.utils import gen_client_id

from hub.config import MqttSettings
from hub.errors import TransportError
from hub.ingest.broker import EmbeddedBroker
from hub.ingest.commands import CommandRecord, Commands
from hub.ingest.mqtt_auth import DeviceGate
from hub.ingest.mqtt_guard import ConnectionGuard, GuardedBroker
from hub.ingest.service import IngestService
from hub.lifecycle import TaskSet
from provisioning.credentials import CredentialEvents

__all__ = ["EmbeddedMqtt", "HubAuthPlugin", "HubBroker", "HubTopicPlugin", "hub_plugins"]

log = logging.getLogger(__name__)


def hub_plugins() -> dict[str, Any]:
    """The broker's plug-in configuration: registry authentication and the device topic ACL only."""
    return {f"{__name__}.HubAuthPlugin": {}, f"{__name__}.HubTopicPlugin": {}}


class HubAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Username = serial, password checked against the registry's argon2 hash."""

    gate: DeviceGate | None = None

    async def authenticate(self, *, session: Any) -> bool:
        """True only for a live, accepting device whose client id is its serial."""
        if self.gate is None:
            return False
        entry = await self.gate.authenticate(session.username, session.password, session.client_id or "")
        return entry is not None


class HubTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """A device subscribes to, and is sent, only its own command topic."""

    gate: DeviceGate | None = None

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Any = None
    ) -> bool:
        """Allow or refuse one subscribe (counted as "acl") or delivery."""
        if self.gate is None or session is None or topic is None:
            return False
        if action == Action.SUBSCRIBE:
            return self.gate.may_subscribe(session.username, topic)
        if action == Action.RECEIVE:
            return self.gate.may_receive(session.username, topic)
        return False  # publishes never get here: HubBroker takes them itself


class HubBroker(GuardedBroker):
    """amqtt's Broker, authenticating before any session change and handing device messages to the gate."""

    def __init__(self, config: dict[str, Any], gate: DeviceGate) -> None:
        super().__init__(config)
        self.gate = gate
        for plugin in self.plugins_manager.plugins:
            if isinstance(plugin, HubAuthPlugin | HubTopicPlugin):
                plugin.gate = gate

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[Any, Any]:
        try:
            handler, session = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except MQTTError as exc:
            await writer.close()
            raise MQTTError(exc) from exc
        except (AMQTTError, NoDataError) as exc:
            raise AMQTTError(exc) from exc
        if not await super()._authenticate(session, None):
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise MQTTError(f"CONNECT of {session.client_id!r} from {remote_address} refused")
        # From here on as amqtt does it, now that the client is known to own this client id.
        if session.clean_session:
            if session.client_id:
                await self._delete_session(session.client_id)
            else:
                session.client_id = gen_client_id()
            session.parent = 0
        elif session.client_id in self._sessions:
            existing, _ = self._sessions[session.client_id]
            for name in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive"):
                setattr(existing, name, getattr(session, name))
            existing.will_retain = session.will_retain
            existing.username, existing.password = session.username, session.password
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    async def _authenticate(self, session: Any, listener: Any) -> bool:
        # Every session that gets here passed _initialize_client_session's check.
        return True

    async def _handle_message_delivery(self, client_session: Any, handler: Any, wait_deliver: Any) -> bool:
        message = wait_deliver.result()
        if message is None:
            return True
        topic = message.topic
        if not topic or "#" in topic or "+" in topic or topic.startswith("$"):
            return False  # a protocol violation: amqtt closes the connection too
        packet = message.publish_packet
        redelivery = bool(packet is not None and packet.dup_flag)
        try:
            self.gate.publish_from(
                client_session.username or "", topic, bytes(message.data), redelivery=redelivery
            )
        except Exception:
            log.exception("MQTT ingest failed on %s from %s", topic, client_session.client_id)
        return True

    async def _broadcast_message(
        self, session: Any, topic: str | None, data: bytes | bytearray | None, force_qos: int | None = None
    ) -> None:
        if session is None:
            await super()._broadcast_message(session, topic, data, force_qos)
            return
        # Only a last will arrives here with a session (uplinks never reach the broadcast queue).
        if session.username and topic is not None and data is not None:
            self.gate.will(session.username, topic, bytes(data))

    async def retain_message(
        self, source_session: Any, topic_name: str | None, data: Any, qos: int | None = None
    ) -> None:
        # Device topics are consumed in-process and nobody may subscribe to them: nothing to retain.
        if source_session is None:
            await super().retain_message(source_session, topic_name, data, qos)

    async def _handle_disconnect(self, client_session: Any, handler: Any, disconnect_waiter: Any) -> None:
        clean = isinstance(disconnect_waiter.result(), DisconnectPacket)
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)
        if not clean and client_session.username:
            self.gate.lost(client_session.username)

    async def close_session(self, client_id: str) -> bool:
        """Drop the live connection of ``client_id``; True when there was one."""
        session, handler = self._sessions.get(client_id, (None, None))
        if session is None or handler is None or not session.transitions.is_connected():
            return False
        await handler.handle_connection_closed()
        return True

    def connected(self, client_id: str) -> bool:
        """Whether ``client_id`` has a live connection."""
        session = self._sessions.get(client_id, (None, None))[0]
        return session is not None and bool(session.transitions.is_connected())

    @property
    def connected_count(self) -> int:
        """How many sessions are connected now."""
        return sum(1 for s, _h in self._sessions.values() if s.transitions.is_connected())


class EmbeddedMqtt:
    """The MQTT component of embedded mode: the broker, the gate, commands, and session revocation."""

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        ingest: IngestService,
        credential_events: CredentialEvents,
        clock: Callable[[], float],
        *,
        command_timeout: float = 30.0,
    ) -> None:
        self.settings = settings
        self.ingest = ingest
        self.credential_events = credential_events
        self.commands = Commands(
            ingest.directory, ingest.pipeline, clock, timeout=command_timeout, qos=settings.qos
        )
        self.gate = DeviceGate(
            ingest.directory, ingest.pipeline, self.commands, max_payload=settings.max_payload
        )
        self.guard = ConnectionGuard(settings, ingest.pipeline.metrics)
        self.server = EmbeddedBroker(settings, hub_plugins(), broker_factory=self._make_broker)
        self._tasks = TaskSet()
        self._unsubscribe: Callable[[], None] | None = None

    def _make_broker(self, config: dict[str, Any]) -> HubBroker:
        broker = HubBroker(config, self.gate)
        broker.guard = self.guard
        return broker

    @property
    def port(self) -> int | None:
        """The port the broker listens on, once started."""
        return self.server.port

    @property
    def broker(self) -> HubBroker | None:
        """The running broker."""
        broker: HubBroker | None = self.server.broker
        return broker

    async def start(self) -> None:
        """Start the broker and follow credential changes."""
        await self.server.start()
        self.commands.publish = self._publish
        self._unsubscribe = self.credential_events.subscribe(self._on_credentials)

    async def stop(self) -> None:
        """Stop following credentials, then close every session and the listener."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.commands.publish = None
        await self._tasks.stop(2.0)
        await self.server.stop()

    async def health(self) -> tuple[bool, str]:
        """The broker's state and how many devices are connected."""
        ok, detail = await self.server.health()
        broker = self.broker
        count = broker.connected_count if broker is not None else 0
        return ok, f"{detail}, {count} connected"

    async def send_command(
        self, serial: str, name: str, params: dict[str, Any] | None = None
    ) -> CommandRecord:
        """Publish a command to a device (queued by the broker if its persistent session is offline)."""
        return await self.commands.send(serial, name, params)

    async def _publish(self, topic: str, payload: bytes, qos: int) -> None:
        broker = self.broker
        if broker is None:
            raise TransportError("the embedded broker is not running")
        await broker.internal_message_broadcast(topic, payload, qos)

    def _on_credentials(self, device_id: int, what: str) -> None:
        entry = self.ingest.directory.by_id(device_id)
        if entry is not None:
            self._tasks.spawn(self._revoke(device_id, entry.serial), name=f"mqtt-revoke-{device_id}")

    async def _revoke(self, device_id: int, serial: str) -> None:
        # Rotated or revoked: the session authenticated with credentials that no longer hold.
        broker = self.broker
        if broker is None:
            return
        if await broker.close_session(serial):
            log.info("closed the MQTT session of %s (credentials changed)", serial)
        entry = await self.ingest.directory.refresh(device_id)
        # A reconnect between the change and the refresh may have used the stale cached hash.
        stale = entry is None or not entry.accepting or self.gate.generations.get(serial) != entry.generation
        if stale:
            await broker.close_session(serial)
