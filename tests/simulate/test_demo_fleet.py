"""The demo fleet inside a hub: MQTT and CoAP (OSCORE) devices heard, bad frames refused and counted per transport."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.app import Hub, build_hub
from hub.config import Settings
from hub.simulate.component import DemoFleet
from hub.simulate.runner import FleetRunner
from hub.simulate.street import load_fleet
from tests.fleet import TEST_SECRET_KEY
from tests.ingest.test_mqtt_kit import eventually

# One grid, one building, four households: with the default share the fourth is an NB-IoT (CoAP) household.
STREET = {
    "enabled": True,
    "communities": 1,
    "grids_per_community": 1,
    "buildings_per_grid": 1,
    "households_per_building": 4,
    "rate": 200,
    "scenario_every": 0,
}


def accepted(hub: Hub, transport: str, kind: str) -> float:
    """Uplinks the hub accepted over ``transport`` from devices of ``kind``."""
    value = hub.metrics.registry.get_sample_value(
        "iothub_ingest_messages_total", {"transport": transport, "kind": kind}
    )
    return value or 0.0


def refused(hub: Hub, transport: str, reason: str | None = None) -> float:
    """Uplinks refused over ``transport`` (for ``reason``, or for any)."""
    total = 0.0
    for metric in hub.metrics.registry.collect():
        for sample in metric.samples:
            labels = sample.labels
            if (
                sample.name == "iothub_ingest_rejected_total"
                and labels.get("transport") == transport
                and (reason is None or labels.get("reason") == reason)
            ):
                total += sample.value
    return total


@pytest.fixture
async def demo_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub with embedded MQTT, CoAP on a free port and the demo fleet enabled."""
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"},
        mqtt={"port": 0},
        coap={"port": 0},
        simulate=STREET,
        var_dir=tmp_path / "var",
        secret_key=TEST_SECRET_KEY,
    )
    hub = build_hub(settings)
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()


def runner_of(hub: Hub) -> FleetRunner:
    """The running demo fleet's runner."""
    fleet = next(c for c in hub.lifecycle.components if isinstance(c, DemoFleet))
    assert fleet.runner is not None
    return fleet.runner


async def test_both_transports_are_heard(demo_hub: Hub) -> None:
    runner = runner_of(demo_hub)
    coap = [d for d in runner.fleet if d.transport == "coap"]
    assert sorted(d.kind for d in coap) == ["door", "smoke"]
    assert runner.stats.coap.connected == 2 and runner.stats.mqtt.connected == 11
    for transport, kind in (("mqtt", "smoke"), ("mqtt", "panic_button"), ("coap", "smoke"), ("coap", "door")):
        await eventually(
            lambda t=transport, k=kind: accepted(demo_hub, t, k) >= 3,  # type: ignore[misc]
            f"{kind} uplinks over {transport}",
        )
    # Nothing the routine traffic sends is refused, on either transport.
    assert refused(demo_hub, "coap") == 0 and refused(demo_hub, "mqtt") == 0
    for dev in coap:
        entry = await demo_hub.ingest.directory.lookup(dev.serial)
        assert entry is not None
        status = demo_hub.ingest.states.get(entry.id)
        assert status is not None and status.online and status.last_seen is not None
        assert "battery" in status.metrics
    # The runner counts an uplink when its 2.04 arrives, a moment after the hub counted it.
    await eventually(lambda: runner.stats.coap.published >= 6, "the 2.04 answers at the simulator")
    assert runner.stats.coap.failed == 0


async def test_fleet_file_keeps_the_oscore_keys_private(demo_hub: Hub) -> None:
    path = demo_hub.settings.var_dir / "fleet.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = {row["serial"]: row for row in json.loads(path.read_text())}
    coap = [row for row in rows.values() if row["transport"] == "coap"]
    assert coap and all(set(row["oscore"]) >= {"secret_hex", "sender-id_hex"} for row in coap)
    assert all(row["oscore"] is None for row in rows.values() if row["transport"] == "mqtt")
    assert [d.serial for d in load_fleet(path) if d.transport == "coap"] == [row["serial"] for row in coap]
    state = demo_hub.settings.var_dir / "fleet-oscore"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert sorted(p.name for p in state.iterdir()) == sorted(row["serial"] for row in coap)


@pytest.mark.parametrize("transport", ["mqtt", "coap"])
async def test_malformed_and_replayed_frames_are_refused_per_transport(demo_hub: Hub, transport: str) -> None:
    runner = runner_of(demo_hub)
    await eventually(lambda: accepted(demo_hub, transport, "smoke") >= 1, f"traffic over {transport}")
    other = "coap" if transport == "mqtt" else "mqtt"
    await runner.scenario("malformed", transport=transport)
    await eventually(lambda: refused(demo_hub, transport) >= 3, f"three malformed frames over {transport}")
    assert refused(demo_hub, transport, "bad_json") >= 1
    touched = await runner.scenario("replay", transport=transport)
    assert len(touched) == 1
    await eventually(lambda: refused(demo_hub, transport, "replayed") == 1, f"the replay over {transport}")
    assert refused(demo_hub, transport) == 4
    # The other transport saw none of it, and the fleet kept talking.
    assert refused(demo_hub, other) == 0
    if transport == "coap":
        # The hub answered each bad frame with an error code, which the simulator counts as rejected.
        assert runner.stats.coap.rejected == 4
    before = accepted(demo_hub, transport, "smoke") + accepted(demo_hub, transport, "door")
    await eventually(
        lambda: accepted(demo_hub, transport, "smoke") + accepted(demo_hub, transport, "door") > before,
        f"traffic over {transport} after the bad frames",
    )
