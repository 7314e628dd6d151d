"""The runner driven directly: every payload format over OSCORE, sequence state kept across restarts, the CLI."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.app import Hub, build_hub
from hub.config import Settings
from hub.simulate.runner import FleetRunner
from hub.simulate.street import StreetShape, build_demo_street, load_fleet
from hub.simulate.traffic import SimDevice, next_uplink
from provisioning.credentials import CredentialStore, SecretBox
from tests.fleet import TEST_SECRET_KEY
from tests.ingest.test_mqtt_kit import eventually
from tests.simulate.test_demo_fleet import accepted, refused


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"},
        mqtt={"port": 0},
        coap={"port": 0},
        var_dir=tmp_path / "var",
        secret_key=TEST_SECRET_KEY,
    )


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub with embedded MQTT and CoAP on free ports, no demo fleet."""
    the_hub = build_hub(_settings(tmp_path))
    await the_hub.start()
    try:
        yield the_hub
    finally:
        await the_hub.stop()


def ports(hub: Hub) -> tuple[int, int]:
    """The hub's MQTT and CoAP ports."""
    return int(hub.listening["mqtt"].rsplit(":", 1)[1]), int(hub.listening["coap"].rsplit(":", 1)[1])


async def _all_coap_street(hub: Hub) -> list[SimDevice]:
    store = CredentialStore(hub.db, SecretBox(TEST_SECRET_KEY), hub.credential_events)
    return await build_demo_street(hub.db, store, StreetShape(1, 1, 1, 3, coap_share=1.0), prefix="RUN")


async def test_every_format_and_a_restart_keep_oscore_in_step(hub: Hub, tmp_path: Path) -> None:
    fleet = await _all_coap_street(hub)
    coap = [d for d in fleet if d.transport == "coap"]
    assert {d.fmt for d in coap} == {"binary", "cbor", "json"} and len(coap) == 6
    mqtt_port, coap_port = ports(hub)
    rng = random.Random(7)
    state = tmp_path / "fleet-oscore"
    for round_ in (1, 2):
        # A second runner is the simulator restarted: it must continue each context's sequence numbers.
        runner = FleetRunner(fleet, "127.0.0.1", mqtt_port, coap_port=coap_port, state_dir=state)
        await runner.connect_all()
        try:
            assert runner.stats.coap.connected == 6 and runner.stats.mqtt.connected == 4
            for dev in coap:
                await runner.publish(dev, next_uplink(dev, rng, 1.7e9 + dev.seq))
        finally:
            await runner.close()
        assert (runner.stats.coap.published, runner.stats.coap.rejected, runner.stats.coap.failed) == (
            6,
            0,
            0,
        )
        assert accepted(hub, "coap", "smoke") == 3 * round_ and accepted(hub, "coap", "door") == 3 * round_
    assert refused(hub, "coap") == 0
    assert all(len(list((state / d.serial).iterdir())) == 1 for d in coap)


async def test_without_a_coap_port_coap_devices_stay_quiet(hub: Hub, tmp_path: Path) -> None:
    fleet = await _all_coap_street(hub)
    mqtt_port, _ = ports(hub)
    runner = FleetRunner(fleet, "127.0.0.1", mqtt_port, state_dir=tmp_path / "s")
    await runner.connect_all()
    try:
        assert runner.stats.connected == 4 and runner.stats.coap.connected == 0
        assert not any(runner.live(d) for d in fleet if d.transport == "coap")
        with pytest.raises(ValueError, match="no device fits"):
            await runner.scenario("replay", transport="coap")
    finally:
        await runner.close()
    assert not (tmp_path / "s").exists()


async def test_cli_enrolls_and_sends_over_both_transports(hub: Hub, tmp_path: Path) -> None:
    mqtt_port, coap_port = ports(hub)
    env_file = tmp_path / "sim.env"
    env_file.write_text(f"HUB_DATABASE_URL={hub.settings.database.url}\nHUB_SECRET_KEY={TEST_SECRET_KEY}\n")
    fleet_file = tmp_path / "sim" / "fleet.json"
    args = ["--fleet", str(fleet_file), "--port", str(mqtt_port), "--coap-port", str(coap_port)]
    args += ["--devices", "6", "--coap-share", "0.5", "--rate", "40", "--duration", "0.5"]
    args += ["--scenario", "replay", "--env-file", str(env_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        "simulate",
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 50)
    assert proc.returncode == 0, err.decode()
    last = out.decode().strip().splitlines()[-1]
    fleet = load_fleet(fleet_file)
    coap = [d for d in fleet if d.transport == "coap"]
    assert coap and len(fleet) - len(coap) > 0
    assert f"; coap {len(coap)} connected, 0 refused," in last, last
    assert f"(mqtt {len(fleet) - len(coap)} connected, 0 refused," in last, last
    assert last.endswith(", 0 failed)"), last
    await eventually(
        lambda: accepted(hub, "coap", "smoke") + accepted(hub, "coap", "door") > 0, "CoAP uplinks"
    )
    assert accepted(hub, "mqtt", "panic_button") > 0
    assert (tmp_path / "sim" / "fleet-oscore").is_dir()
