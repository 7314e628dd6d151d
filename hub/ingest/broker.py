"""The embedded amqtt broker as a hub component."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from hub.config import MqttSettings
from hub.errors import StartupError
from hub.netutil import bind_tcp

__all__ = ["EmbeddedBroker"]

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """Runs amqtt in-process on the configured port (or a free one when fallback is on)."""

    name = "mqtt-broker"

    def __init__(
        self,
        settings: MqttSettings,
        plugins: dict[str, Any] | None = None,
        *,
        broker_factory: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.plugins = plugins
        # The MQTT ingest passes its Broker subclass here (hub.ingest.mqtt_embedded.HubBroker).
        self.broker_factory = broker_factory
        self.port: int | None = None
        self._broker: Any = None

    def _config(self, port: int) -> dict[str, Any]:
        config: dict[str, Any] = {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": f"{self.settings.host}:{port}",
                    "max_connections": -1,
                }
            },
            "timeout_disconnect_delay": 0,
        }
        config["plugins"] = (
            self.plugins
            if self.plugins is not None
            else {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            }
        )
        return config

    async def start(self) -> None:
        """Start the broker; the port it really took is in ``self.port``."""
        from amqtt.broker import Broker

        # Bind first so a busy port is reported (or replaced) before amqtt tries it.
        probe = bind_tcp(
            self.settings.host,
            self.settings.port,
            fallback=self.settings.port_fallback,
            setting="HUB_MQTT_PORT",
        )
        port = probe.getsockname()[1]
        probe.close()
        factory = self.broker_factory or Broker
        self._broker = factory(self._config(port))
        try:
            await self._broker.start()
        except Exception as exc:
            raise StartupError(f"embedded MQTT broker on {self.settings.host}:{port}: {exc}") from exc
        self.port = port
        log.info("embedded MQTT broker listening on %s:%d", self.settings.host, port)

    async def stop(self) -> None:
        """Shut the broker down; its sessions are closed."""
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()
            # amqtt leaves its broadcast loop ending on the next iteration.
            await asyncio.sleep(0)

    async def health(self) -> tuple[bool, str]:
        """Started and listening."""
        if self._broker is None:
            return False, "not started"
        state = self._broker.transitions.state
        return state == "started", f"{state} on {self.settings.host}:{self.port}"

    @property
    def broker(self) -> Any:
        """The amqtt Broker (for the in-process ingest hook)."""
        return self._broker
