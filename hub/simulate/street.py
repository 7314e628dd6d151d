"""A demo street shaped like the seed's (communities → grids → buildings → households), enrolled with devices."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import Format
from hub.db import Database
from hub.db.places import Place
from hub.simulate.traffic import SimDevice
from provisioning.credentials import CredentialStore
from provisioning.devices import Actor
from provisioning.enroll import DeviceSpec, enroll_direct
from provisioning.places import PlaceData, create_place
from provisioning.responders import ResponderData, create_responder

__all__ = ["StreetShape", "build_demo_street", "load_fleet", "save_fleet"]

ACTOR = Actor("simulator", "cli")
# Every household of the demo gets a smoke sensor, a door sensor and a panic button; every grid worker a body-cam.
HOUSEHOLD_KINDS = ("smoke", "door", "panic_button")
# NB-IoT devices: in a CoAP household the smoke and door sensors speak CoAP; the pendant stays on MQTT.
COAP_KINDS = ("smoke", "door")
COAP_FORMATS: tuple[Format, ...] = ("binary", "cbor", "json")


@dataclass(frozen=True)
class StreetShape:
    """How big the simulated street is."""

    communities: int = 2
    grids_per_community: int = 2
    buildings_per_grid: int = 2
    households_per_building: int = 4
    # The share of households whose smoke and door sensors are NB-IoT devices speaking CoAP (0 to 1).
    coap_share: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.coap_share <= 1.0:
            raise ValueError(f"coap_share must be between 0 and 1, not {self.coap_share}")

    def is_coap(self, household_index: int) -> bool:
        """Whether the household numbered ``household_index`` (from 0) has CoAP sensors: spread evenly."""
        n = household_index
        return math.floor((n + 1) * self.coap_share + 1e-9) > math.floor(n * self.coap_share + 1e-9)

    @property
    def households(self) -> int:
        """Households in all."""
        return (
            self.communities
            * self.grids_per_community
            * self.buildings_per_grid
            * self.households_per_building
        )


async def _place(session: AsyncSession, code: str, level: str, name: str, parent: str | None) -> str:
    await create_place(
        session, PlaceData(code=code, level=level, name=name, parent=parent), actor=ACTOR.name, channel="cli"
    )
    return code


async def build_demo_street(
    db: Database, store: CredentialStore, shape: StreetShape, prefix: str = "DEMO"
) -> list[SimDevice]:
    """Create the places, grid workers and devices; returns the fleet with its one-time secrets."""
    async with db.session() as session:
        if await session.scalar(select(func.count()).select_from(Place).where(Place.code == prefix)):
            raise ValueError(f"a street with code {prefix} exists already")
        district = await _place(session, prefix, "district", "示范区 Demo District", None)
        street = await _place(session, f"{prefix}-S1", "street", "示范街道 Demo Street", district)
    fleet: list[SimDevice] = []
    phone = 13800000000
    homes = coap_homes = 0
    for c in range(1, shape.communities + 1):
        async with db.session() as session:
            community = await _place(session, f"{street}-C{c}", "community", f"社区 {c}", street)
        for g in range(1, shape.grids_per_community + 1):
            async with db.session() as session:
                grid = await _place(session, f"{community}-G{g}", "grid", f"网格 {c}-{g}", community)
                phone += 1
                worker = await create_responder(
                    session,
                    ResponderData(
                        name=f"网格员 {c}-{g}", phone=f"+86{phone}", role="grid_worker", places=[grid]
                    ),
                    actor=ACTOR.name,
                    channel="cli",
                )
                done = await enroll_direct(
                    session,
                    DeviceSpec(serial=f"{grid}-CAM", kind="bodycam", responder_id=worker.id),
                    actor=ACTOR,
                    store=store,
                )
                fleet.append(SimDevice(done.device.serial, "bodycam", done.secrets.mqtt_password))
                for b in range(1, shape.buildings_per_grid + 1):
                    building = await _place(session, f"{grid}-B{b}", "building", f"{b} 号楼", grid)
                    for h in range(1, shape.households_per_building + 1):
                        household = await _place(
                            session, f"{building}-U{h:02d}", "household", f"{h:02d} 室", building
                        )
                        # NB-IoT households take turns with the format, so all three reach the hub.
                        fmt = COAP_FORMATS[coap_homes % len(COAP_FORMATS)] if shape.is_coap(homes) else None
                        homes += 1
                        coap_homes += fmt is not None
                        fleet += await _household_devices(session, store, household, building, fmt)
    return fleet


async def _household_devices(
    session: AsyncSession, store: CredentialStore, household: str, building: str, coap_fmt: Format | None
) -> list[SimDevice]:
    """Enroll a household's devices; with ``coap_fmt`` its smoke and door sensors speak CoAP in that format."""
    devices = []
    for kind in HOUSEHOLD_KINDS:
        serial = f"{household}-{kind[:2].upper()}"
        coap = coap_fmt is not None and kind in COAP_KINDS
        spec = DeviceSpec(serial=serial, kind=kind, household=household, transport="coap" if coap else "mqtt")
        done = await enroll_direct(session, spec, actor=ACTOR, store=store)
        dev = SimDevice(serial, kind, done.secrets.mqtt_password, household, building)
        if coap and coap_fmt is not None and done.secrets.oscore is not None:
            dev.transport, dev.fmt, dev.oscore = "coap", coap_fmt, done.secrets.oscore.for_device()
        devices.append(dev)
    return devices


def save_fleet(path: Path, fleet: list[SimDevice]) -> None:
    """Write the fleet with its secrets to ``path``, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode through O_CREAT: tighten it too
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump([asdict(d) for d in fleet], out, ensure_ascii=False, indent=1)


def load_fleet(path: Path) -> list[SimDevice]:
    """Read a fleet written by ``save_fleet``."""
    return [SimDevice(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
