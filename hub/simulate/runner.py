"""Drive a simulated fleet over MQTT: one connection per device, a steady total rate, scenarios on demand."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.ingest.topics import status_topic, up_topic
from hub.simulate.traffic import Scenario, SimDevice, next_uplink, scenario_uplinks

__all__ = ["FleetRunner", "RunnerStats"]

log = logging.getLogger(__name__)
TICK = 0.05


@dataclass
class RunnerStats:
    """What the runner did."""

    connected: int = 0
    refused: int = 0
    published: int = 0
    failed: int = 0


class FleetRunner:
    """Connects every device of the fleet to a broker and publishes their traffic."""

    def __init__(
        self,
        fleet: list[SimDevice],
        host: str,
        port: int,
        *,
        rate: float = 10.0,
        qos: int = 0,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.host = host
        self.port = port
        self.rate = rate
        self.qos = qos
        self.rng = random.Random(seed)
        self.clock = clock
        self.stats = RunnerStats()
        self._clients: dict[str, Any] = {}

    async def connect_all(self, concurrency: int = 32) -> None:
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

        await asyncio.gather(*(connect(dev) for dev in self.fleet))

    async def publish(self, dev: SimDevice, payload: bytes) -> None:
        """Send one uplink of ``dev``."""
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

    async def run(self, duration: float | None = None) -> None:
        """Publish routine traffic at ``rate`` messages a second, round-robin, until ``duration`` or cancelled."""
        live = [dev for dev in self.fleet if dev.serial in self._clients]
        if not live:
            return
        started = self.clock()
        due = 0.0
        index = 0
        while duration is None or self.clock() - started < duration:
            due += self.rate * TICK
            while due >= 1:
                due -= 1
                dev = live[index % len(live)]
                index += 1
                if not dev.silent:
                    await self.publish(dev, next_uplink(dev, self.rng, self.clock()))
            await asyncio.sleep(TICK)

    async def scenario(self, name: Scenario, serial: str | None = None) -> list[str]:
        """Play a scenario on one device (or a fitting one); returns the serials it touched."""
        wanted = {
            "fire": "smoke",
            "sos": "bodycam",
            "panic": "panic_button",
            "stops_moving": "panic_button",
        }.get(name)
        candidates = [
            d
            for d in self.fleet
            if (serial is None or d.serial == serial) and (wanted is None or d.kind == wanted)
        ]
        if not candidates:
            raise ValueError(f"no device fits scenario {name!r}")
        target = candidates[0] if serial else self.rng.choice(candidates)
        touched = [target]
        if name == "fire" and target.building:
            # A fire sets off the smoke sensors of the whole building, not just one.
            touched = [d for d in self.fleet if d.kind == "smoke" and d.building == target.building]
        if name == "stops_moving" and target.household:
            touched = [d for d in self.fleet if d.household == target.household]
        for dev in touched:
            for payload in scenario_uplinks(name, dev, self.rng, self.clock()):
                await self.publish(dev, payload)
        return [d.serial for d in touched]

    async def close(self) -> None:
        """Disconnect every device cleanly (no last will is sent)."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.disconnect()
            except Exception as exc:
                log.debug("simulator: disconnect failed: %s", exc)
