"""Drive a simulated fleet: MQTT and CoAP devices at one shared rate, scenarios on demand."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hub.simulate.coap_link import CoapLink
from hub.simulate.mqtt_link import LinkStats, MqttLink
from hub.simulate.traffic import Scenario, SimDevice, next_uplink, scenario_uplinks

__all__ = ["FleetRunner", "RunnerStats"]

log = logging.getLogger(__name__)
TICK = 0.05
# The kind a scenario needs; the others fit any device.
_SCENARIO_KINDS = {"fire": "smoke", "sos": "bodycam", "panic": "panic_button", "stops_moving": "panic_button"}


@dataclass
class RunnerStats:
    """What the runner did, per transport and in all."""

    mqtt: LinkStats = field(default_factory=LinkStats)
    coap: LinkStats = field(default_factory=LinkStats)

    @property
    def connected(self) -> int:
        """Devices ready to send (MQTT connected, CoAP context open)."""
        return self.mqtt.connected + self.coap.connected

    @property
    def refused(self) -> int:
        """Devices that could not get ready."""
        return self.mqtt.refused + self.coap.refused

    @property
    def published(self) -> int:
        """Uplinks sent (MQTT) or accepted (CoAP)."""
        return self.mqtt.published + self.coap.published

    @property
    def failed(self) -> int:
        """Uplinks not sent or not answered."""
        return self.mqtt.failed + self.coap.failed

    def summary(self) -> str:
        """Totals first, then each transport."""
        return (
            f"{self.connected} connected, {self.refused} refused, {self.published} published, "
            f"{self.failed} failed ({self.mqtt.line('mqtt')}; {self.coap.line('coap')})"
        )


class FleetRunner:
    """Connects every device of the fleet (MQTT broker, CoAP with OSCORE) and sends their traffic."""

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
        coap_host: str | None = None,
        coap_port: int | None = None,
        state_dir: Path = Path("var/fleet-oscore"),
    ) -> None:
        self.fleet = fleet
        self.rate = rate
        self.rng = random.Random(seed)
        self.clock = clock
        self.mqtt = MqttLink(host, port, qos=qos)
        # Without a CoAP port (no CoAP ingest) the CoAP devices stay quiet.
        self.coap = None if coap_port is None else CoapLink(coap_host or host, coap_port, state_dir)
        self.stats = RunnerStats(self.mqtt.stats, self.coap.stats if self.coap else LinkStats())

    def _is_coap(self, dev: SimDevice) -> bool:
        return dev.transport == "coap"

    def live(self, dev: SimDevice) -> bool:
        """Whether ``dev`` is ready to send."""
        if self._is_coap(dev):
            return self.coap is not None and self.coap.has(dev.serial)
        return self.mqtt.has(dev.serial)

    async def connect_all(self, concurrency: int = 32) -> None:
        """Connect the MQTT devices and open the CoAP devices' OSCORE contexts."""
        coap = [dev for dev in self.fleet if self._is_coap(dev)]
        await self.mqtt.open([dev for dev in self.fleet if not self._is_coap(dev)], concurrency)
        if self.coap is not None:
            await self.coap.open(coap)
        elif coap:
            log.warning("simulator: no CoAP port given; %d CoAP devices stay quiet", len(coap))

    async def publish(
        self, dev: SimDevice, payload: bytes, *, sniff: bool = False, wait: bool = True
    ) -> None:
        """Send one uplink; ``sniff``: no CoAP Content-Format; ``wait=False``: do not await the CoAP answer."""
        if not self._is_coap(dev):
            await self.mqtt.send(dev, payload)
        elif self.coap is None:
            self.stats.coap.failed += 1
        elif wait:
            await self.coap.send(dev, payload, None if sniff else dev.fmt)
        else:
            self.coap.send_soon(dev, payload, None if sniff else dev.fmt)

    async def run(self, duration: float | None = None) -> None:
        """Send routine traffic at ``rate`` messages a second, round-robin, until ``duration`` or cancelled."""
        live = [dev for dev in self.fleet if self.live(dev)]
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
                    await self.publish(dev, next_uplink(dev, self.rng, self.clock()), wait=False)
            await asyncio.sleep(TICK)
        await self.drain()

    async def drain(self) -> None:
        """Wait until every CoAP uplink in flight is answered."""
        if self.coap is not None:
            await self.coap.drain()

    async def scenario(
        self, name: Scenario, serial: str | None = None, *, transport: str | None = None
    ) -> list[str]:
        """Play a scenario on one device (or a fitting live one, of ``transport`` if given); returns the serials."""
        wanted = _SCENARIO_KINDS.get(name)
        candidates = [
            d
            for d in self.fleet
            if (serial is None or d.serial == serial)
            and (wanted is None or d.kind == wanted)
            and (transport is None or d.transport == transport)
            and (serial is not None or self.live(d))
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
                await self.publish(dev, payload, sniff=name == "malformed")
        return [d.serial for d in touched]

    async def close(self) -> None:
        """Disconnect every MQTT device cleanly (no last will is sent) and stop the CoAP client."""
        await self.mqtt.close()
        if self.coap is not None:
            await self.coap.close()
