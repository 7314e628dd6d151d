"""The demo fleet as a hub component: a street enrolled on first start, then steady traffic and scenarios."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from hub.errors import StartupError
from hub.lifecycle import TaskSet
from hub.simulate.runner import FleetRunner
from hub.simulate.street import StreetShape, build_demo_street, load_fleet, save_fleet
from hub.simulate.traffic import Scenario
from provisioning.credentials import CredentialStore, SecretBox

if TYPE_CHECKING:
    from hub.app import Hub
    from hub.ingest.mqtt_embedded import EmbeddedMqtt

__all__ = ["DemoFleet"]

log = logging.getLogger(__name__)
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
DEMO_SCENARIOS: tuple[Scenario, ...] = ("panic", "fire", "sos", "malformed", "replay")


class DemoFleet:
    """Simulated devices talking to the hub's own broker; started last, stopped first."""

    name = "demo-fleet"

    def __init__(
        self, hub: Hub, broker: EmbeddedMqtt, shape: StreetShape, rate: float, scenario_every: float
    ) -> None:
        self.hub = hub
        self.broker = broker
        self.shape = shape
        self.rate = rate
        self.scenario_every = scenario_every
        self.runner: FleetRunner | None = None
        self._tasks = TaskSet()

    async def start(self) -> None:
        """Enroll the demo street once (secrets kept in var/fleet.json), connect every device, start traffic."""
        path = self.hub.settings.var_dir / "fleet.json"
        if path.exists():
            fleet = load_fleet(path)
        else:
            box = SecretBox(self.hub.settings.secret_key.get_secret_value())
            store = CredentialStore(self.hub.db, box, self.hub.credential_events, self.hub.clock)
            fleet = await build_demo_street(self.hub.db, store, self.shape)
            save_fleet(path, fleet)
            await self.hub.ingest.directory.load_all()
            log.info("demo: enrolled %d simulated devices; their secrets are in %s", len(fleet), path)
        if self.broker.port is None:
            raise StartupError("demo fleet: the embedded broker is not listening")
        coap_host, coap_port = self._coap_address()
        self.runner = FleetRunner(
            fleet,
            self.broker.settings.host,
            self.broker.port,
            rate=self.rate,
            coap_host=coap_host,
            coap_port=coap_port,
            state_dir=path.parent / "fleet-oscore",
        )
        await self.runner.connect_all()
        self._tasks.spawn(self.runner.run(), name="demo-fleet-traffic")
        if self.scenario_every > 0:
            self._tasks.spawn(self._scenarios(), name="demo-fleet-scenarios")

    def _coap_address(self) -> tuple[str | None, int | None]:
        """Where the hub's CoAP ingest listens (it starts before the fleet); no port: no CoAP traffic."""
        for component in self.hub.lifecycle.components:
            port = getattr(component, "port", None)
            if component.name == "coap" and port is not None:
                host = str(component.settings.host)  # type: ignore[attr-defined]
                # A wildcard bind is reached through loopback from inside the process.
                return _LOOPBACK.get(host, host), int(port)
        return None, None

    async def _scenarios(self) -> None:
        rng = random.Random()
        while True:
            await asyncio.sleep(self.scenario_every)
            if self.runner is not None:
                name = rng.choice(DEMO_SCENARIOS)
                touched = await self.runner.scenario(name)
                log.info("demo: scenario %s on %s", name, ", ".join(touched))

    async def stop(self) -> None:
        """Stop the traffic and disconnect the devices."""
        await self._tasks.stop(2.0)
        if self.runner is not None:
            await self.runner.close()

    async def health(self) -> tuple[bool, str]:
        """Devices connected and messages sent."""
        if self.runner is None:
            return False, "not started"
        s = self.runner.stats
        return s.connected > 0, s.summary()
