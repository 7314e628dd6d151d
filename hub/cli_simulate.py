"""`iothub simulate`: drive a fleet of simulated devices against a running hub (MQTT broker and CoAP)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path
from typing import Annotated

import typer

from hub.simulate.runner import FleetRunner
from hub.simulate.street import StreetShape, build_demo_street, load_fleet, save_fleet
from hub.simulate.traffic import SCENARIOS, SimDevice

__all__ = ["simulate"]


def _shape_for(devices: int, coap_share: float = 0.25) -> StreetShape:
    """A street with at least ``devices`` devices (three per household, one body-cam per grid)."""
    households = max(1, math.ceil(devices / 3))
    per_building = 8
    buildings = max(1, math.ceil(households / per_building))
    grids = max(1, math.ceil(buildings / 4))
    communities = max(1, math.ceil(grids / 28))
    return StreetShape(communities, math.ceil(grids / communities), 4, per_building, coap_share)


async def _enroll(env_file: Path, devices: int, prefix: str, coap_share: float) -> list[SimDevice]:
    from hub.cli import _load
    from hub.db import Database
    from provisioning.credentials import CredentialEvents, CredentialStore, SecretBox

    settings = _load(env_file)
    db = Database(settings.database)
    await db.start()
    try:
        store = CredentialStore(db, SecretBox(settings.secret_key.get_secret_value()), CredentialEvents())
        return await build_demo_street(db, store, _shape_for(devices, coap_share), prefix=prefix)
    finally:
        await db.stop()


def simulate(
    fleet: Annotated[
        Path, typer.Option(help="Fleet file (serials and secrets); written when --devices enrolls.")
    ] = Path("var/demo/fleet.json"),
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    coap_host: Annotated[str | None, typer.Option(help="The hub's CoAP host (default: --host).")] = None,
    coap_port: Annotated[int, typer.Option(help="The hub's CoAP (OSCORE) UDP port.")] = 5683,
    devices: Annotated[
        int, typer.Option(help="Enroll a new street with at least this many devices first.")
    ] = 0,
    coap_share: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="With --devices: share of households with CoAP smoke/door sensors."
        ),
    ] = 0.25,
    prefix: Annotated[str, typer.Option(help="Place code prefix of an enrolled street.")] = "SIM",
    rate: Annotated[float, typer.Option(help="Messages per second, all devices together.")] = 10.0,
    duration: Annotated[float, typer.Option(help="Seconds to run (0: until Ctrl-C).")] = 0.0,
    qos: Annotated[int, typer.Option(min=0, max=1)] = 0,
    scenario: Annotated[
        list[str] | None, typer.Option(help=f"Play a scenario: {', '.join(SCENARIOS)}.")
    ] = None,
    env_file: Annotated[Path, typer.Option("--env-file")] = Path(".env"),
) -> None:
    """Publish realistic traffic for every device of a fleet, with scenarios (fire, sos, silent, ...)."""
    chosen = list(scenario or [])
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        typer.echo(f"iothub: error: unknown scenario {unknown[0]!r}; one of {', '.join(SCENARIOS)}", err=True)
        raise typer.Exit(2)
    if devices:
        enrolled = asyncio.run(_enroll(env_file, devices, prefix, coap_share))
        save_fleet(fleet, enrolled)
        typer.echo(f"enrolled {len(enrolled)} devices; secrets in {fleet}")
    if not fleet.exists():
        typer.echo(f"iothub: error: no fleet file {fleet}; run the demo once or pass --devices N", err=True)
        raise typer.Exit(2)

    async def run() -> None:
        runner = FleetRunner(
            load_fleet(fleet),
            host,
            port,
            rate=rate,
            qos=qos,
            coap_host=coap_host or host,
            coap_port=coap_port,
            # The devices' OSCORE sequence state, next to the fleet file that holds their keys.
            state_dir=fleet.parent / f"{fleet.stem}-oscore",
        )
        await runner.connect_all()
        try:
            for name in chosen:
                touched = await runner.scenario(name)  # type: ignore[arg-type]
                typer.echo(f"scenario {name}: {', '.join(touched)}")
            await runner.run(duration or None)
        finally:
            await runner.close()
            typer.echo(runner.stats.summary())

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
