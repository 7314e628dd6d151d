"""`iothub simulate`: drive a fleet of simulated devices against a running hub's broker."""

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


def _shape_for(devices: int) -> StreetShape:
    """A street with at least ``devices`` devices (three per household, one body-cam per grid)."""
    households = max(1, math.ceil(devices / 3))
    per_building = 8
    buildings = max(1, math.ceil(households / per_building))
    grids = max(1, math.ceil(buildings / 4))
    communities = max(1, math.ceil(grids / 28))
    return StreetShape(communities, math.ceil(grids / communities), 4, per_building)


async def _enroll(env_file: Path, devices: int, prefix: str) -> list[SimDevice]:
    from hub.cli import _load
    from hub.db import Database
    from provisioning.credentials import CredentialEvents, CredentialStore, SecretBox

    settings = _load(env_file)
    db = Database(settings.database)
    await db.start()
    try:
        store = CredentialStore(db, SecretBox(settings.secret_key.get_secret_value()), CredentialEvents())
        return await build_demo_street(db, store, _shape_for(devices), prefix=prefix)
    finally:
        await db.stop()


def simulate(
    fleet: Annotated[
        Path, typer.Option(help="Fleet file (serials and secrets); written when --devices enrolls.")
    ] = Path("var/demo/fleet.json"),
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 1883,
    devices: Annotated[
        int, typer.Option(help="Enroll a new street with at least this many devices first.")
    ] = 0,
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
        enrolled = asyncio.run(_enroll(env_file, devices, prefix))
        save_fleet(fleet, enrolled)
        typer.echo(f"enrolled {len(enrolled)} devices; secrets in {fleet}")
    if not fleet.exists():
        typer.echo(f"iothub: error: no fleet file {fleet}; run the demo once or pass --devices N", err=True)
        raise typer.Exit(2)

    async def run() -> None:
        runner = FleetRunner(load_fleet(fleet), host, port, rate=rate, qos=qos)
        await runner.connect_all()
        try:
            for name in chosen:
                touched = await runner.scenario(name)  # type: ignore[arg-type]
                typer.echo(f"scenario {name}: {', '.join(touched)}")
            await runner.run(duration or None)
        finally:
            await runner.close()
            s = runner.stats
            typer.echo(
                f"{s.connected} connected, {s.refused} refused, {s.published} published, {s.failed} failed"
            )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
