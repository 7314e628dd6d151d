"""Simulated MQTT devices: one amqtt connection each, with the device's own credentials and last will."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from hub.ingest.topics import status_topic, up_topic
from hub.simulate.traffic import SimDevice

__all__ = ["LinkStats", "MqttLink"]

log = logging.getLogger(__name__)


@dataclass
class LinkStats:
    """What one transport of the simulator did."""

    # MQTT: connected to the broker; CoAP: OSCORE context ready.
    connected: int = 0
    refused: int = 0
    # MQTT: handed to the broker; CoAP: answered 2.04 by the hub.
    published: int = 0
    # CoAP only: answered with an error code (what the malformed and replay scenarios expect).
    rejected: int = 0
    # Not sent, or no answer.
    failed: int = 0

    def line(self, name: str) -> str:
        """One human line, e.g. ``mqtt 9 connected, 0 refused, 40 published, 0 failed``."""
        rejected = f", {self.rejected} rejected" if name == "coap" else ""
        return (
            f"{name} {self.connected} connected, {self.refused} refused, "
            f"{self.published} published{rejected}, {self.failed} failed"
        )


class MqttLink:
    """The MQTT side of a fleet: connects its devices and publishes their uplinks."""

    transport = "mqtt"

    def __init__(self, host: str, port: int, *, qos: int = 0) -> None:
        self.host = host
        self.port = port
        self.qos = qos
        self.stats = LinkStats()
        self._clients: dict[str, Any] = {}

    def has(self, serial: str) -> bool:
        """Whether ``serial`` is connected."""
        return serial in self._clients

    async def open(self, devices: list[SimDevice], concurrency: int = 32) -> None:
        """Connect every device with its own credentials and an "offline" last will."""
        from amqtt.client import MQTTClient

        gate = asyncio.Semaphore(concurrency)

        async def connect(dev: SimDevice) -> None:
            config = {
                "keep_alive": 60,
                "auto_reconnect": False,
                "connection_timeout": 5,
                "will": {"topic": status_topic(dev.serial), "message": "offline", "qos": 1, "retain": True},
            }
            client = MQTTClient(client_id=dev.serial, config=config)
            async with gate:
                try:
                    await client.connect(f"mqtt://{dev.serial}:{dev.password}@{self.host}:{self.port}/")
                except Exception as exc:
                    self.stats.refused += 1
                    log.warning("simulator: %s could not connect: %s", dev.serial, exc)
                    return
            self._clients[dev.serial] = client
            self.stats.connected += 1
            await client.publish(status_topic(dev.serial), b"online", qos=1, retain=True)

        await asyncio.gather(*(connect(dev) for dev in devices))

    async def send(self, dev: SimDevice, payload: bytes) -> None:
        """Publish one uplink of ``dev`` (the format is sniffed by the hub, as for a real device)."""
        client = self._clients.get(dev.serial)
        if client is None:
            self.stats.failed += 1
            return
        try:
            await client.publish(up_topic(dev.serial), payload, qos=self.qos)
            self.stats.published += 1
        except Exception as exc:
            self.stats.failed += 1
            log.debug("simulator: publish from %s failed: %s", dev.serial, exc)

    async def drain(self) -> None:
        """Nothing is in flight after ``send`` returns."""

    async def close(self) -> None:
        """Disconnect every device cleanly (no last will is sent)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.disconnect()
            except Exception as exc:
                log.debug("simulator: disconnect failed: %s", exc)
