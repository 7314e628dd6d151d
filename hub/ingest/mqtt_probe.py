"""Proof, at every (re)connect, that the external broker delivers through the hub's shared subscriptions.

A broker that does not implement ``$share`` for MQTT 3.1.1 clients (NATS 2.9's MQTT listener, RabbitMQ
3.10's MQTT plug-in) grants the SUBACK of ``$share/g/devices/+/up`` and takes it as a plain filter that no
topic matches: every uplink is acknowledged to its device and delivered to nobody. So with a shared group
the hub subscribes ``$share/<group>/hub/probe/<client id>`` too, publishes a nonce on
``hub/probe/<client id>`` and waits for it to come back; only then is the connection ready. The filter is
the worker's own within the group, so the probe comes back to it and not to another worker. Probes are
consumed here: never stored, refused or dead-lettered.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from hub.errors import TransportError
from hub.ingest.mqtt_session import MqttConnection
from hub.ingest.topics import probe_topic

__all__ = ["SharedProbe"]

# While other messages keep arriving (a persistent session's backlog delivered first) the wait goes
# on, up to this many times the timeout.
_MAX_ROUNDS = 12


class SharedProbe:
    """One hub worker's probe topic and shared filter; ``prove`` publishes a probe and waits for it."""

    def __init__(self, group: str, client_id: str, where: str, timeout: float) -> None:
        self.topic = probe_topic(client_id)
        self.filter = f"$share/{group}/{self.topic}"
        self.where = where
        self.timeout = timeout
        self.proven = 0  # probes that came back
        self._nonce = b""
        self._arrived: asyncio.Future[None] | None = None

    def take(self, topic: str, payload: bytes) -> bool:
        """True when ``topic`` is the probe's: the message ends here (a stale nonce is dropped)."""
        if topic != self.topic:
            return False
        if self._arrived is not None and payload == self._nonce and not self._arrived.done():
            self._arrived.set_result(None)
        return True

    def refused(self, exc: TransportError) -> TransportError:
        """The SUBACK refused a filter: say what shared subscriptions need of the broker."""
        return TransportError(
            f"{exc.message} (shared group: the broker must support $share subscriptions, and its ACL grant "
            f"the hub's user these filters and {self.topic})"
        )

    async def prove(self, connection: MqttConnection, still_busy: Callable[[], bool]) -> None:
        """Publish a probe and wait until it comes back; TransportError naming the missing feature if not."""
        loop = asyncio.get_running_loop()
        self._nonce = secrets.token_hex(8).encode()
        arrived = self._arrived = loop.create_future()
        try:
            await connection.publish(self.topic, self._nonce, 1)
            for _round in range(_MAX_ROUNDS):
                done, _ = await asyncio.wait({arrived}, timeout=self.timeout)
                if done:
                    self.proven += 1
                    return
                if not still_busy():
                    break
        finally:
            self._arrived = None
            arrived.cancel()
        raise TransportError(
            f"the MQTT broker at {self.where} granted the shared subscription {self.filter} but delivered "
            f"nothing through it within {self.timeout:g} s: it does not implement shared subscriptions "
            "($share) for MQTT 3.1.1 clients (NATS and RabbitMQ do not). Unset HUB_MQTT_SHARED_GROUP and "
            "run one hub worker, or use a broker that does (Mosquitto 2.0, EMQX); see docs/mqtt.md"
        )
