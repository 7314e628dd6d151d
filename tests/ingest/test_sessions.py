"""Device sessions and the replay window: a rebooted device is heard at once, duplicates are taken once.

On a real database (SQLite and PostgreSQL, for the restart cases) and the SQLite telemetry store; the
transports' own session signals are tested with their transports (test_mqtt_*, test_coap_*).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drivers import DRIVERS
from drivers.base import Reading
from hub.db import Database
from hub.errors import DecodeError
from hub.ingest.directory import DeviceEntry
from hub.ingest.service import IngestService
from hub.metrics import HubMetrics
from hub.telemetry import SQLiteStore, SQLiteStoreConfig
from provisioning.credentials import CredentialEvents
from tests.clocks import EpochClock
from tests.fleet import build_street, enroll

SMOKE = DRIVERS["smoke"]
# Where the device's counter stood when it rebooted: below, at and past the window of 64, and far past it.
REBOOTED_AFTER = [10, 50, 63, 64, 1000]


def frame(seq: int, *, alarm: bool = False, battery: int = 90, fmt: str = "binary") -> bytes:
    """A smoke detector uplink, sounding its alarm or not."""
    fields: dict[str, Any] = {"seq": seq, "battery": battery, "smoke": 2.5 if alarm else 0.01}
    fields |= {"temperature": 21.5, "rssi": -80, "alarm": alarm, "events": ["alarm"] if alarm else []}
    return SMOKE.encode(fields, fmt)  # type: ignore[arg-type]


@dataclass
class Hub:
    """An ingest service over a real database, restartable, and the readings its hook saw."""

    db: Database
    store: SQLiteStore
    clock: EpochClock
    service: IngestService
    seen: list[Reading] = field(default_factory=list)

    async def device(self) -> DeviceEntry:
        """The smoke sensor S-1."""
        entry = await self.service.directory.lookup("S-1")
        assert entry is not None
        return entry

    async def restart(self) -> None:
        """Stop the ingest service (its state flushed) and start a new one on the same database."""
        await self.service.stop()
        self.service = await _start(self.db, self.store, self.clock, self.seen)

    def send(self, device: DeviceEntry, payload: bytes, *, redelivery: bool = False) -> bool:
        """Hand one uplink to the pipeline; True when it was taken."""
        self.clock.now += 1
        try:
            if redelivery:
                self.service.pipeline.accept(device, payload, "test", redelivery=True)
            else:
                self.service.pipeline.accept(device, payload, "test")
        except DecodeError as exc:
            assert exc.reason == "replayed"
            return False
        return True

    def replayed(self) -> float:
        """Uplinks refused as replayed so far (by this service)."""
        registry = self.service.pipeline.metrics.registry
        labels = {"transport": "test", "reason": "replayed"}
        return registry.get_sample_value("iothub_ingest_rejected_total", labels) or 0.0


async def _start(db: Database, store: SQLiteStore, clock: EpochClock, seen: list[Reading]) -> IngestService:
    service = IngestService(
        db, store, DRIVERS, HubMetrics(), CredentialEvents(), clock, state_flush_interval=3600
    )
    await service.start()
    service.pipeline.hooks.append(lambda _device, reading, _now: seen.append(reading))
    return service


@pytest.fixture
async def hub(db: Database, tmp_path: Path) -> AsyncIterator[Hub]:
    """One enrolled smoke sensor, S-1."""
    street = await build_street(db)
    await enroll(db, "S-1", "smoke", street.households[0])
    clock = EpochClock(1_790_000_000.0)
    store = SQLiteStore(SQLiteStoreConfig(path=tmp_path / "t.sqlite3", retention_days=None), clock=clock)
    await store.start()
    seen: list[Reading] = []
    rig = Hub(db, store, clock, await _start(db, store, clock, seen), seen)
    try:
        yield rig
    finally:
        await rig.service.stop()
        await store.close()


def alarms(hub: Hub) -> list[int | None]:
    """The sequence numbers of the alarm readings the rules were handed."""
    return [r.seq for r in hub.seen if "alarm" in r.events]


@pytest.mark.parametrize("hub_restarted", [False, True], ids=["running", "hub-restarted"])
@pytest.mark.parametrize("last", REBOOTED_AFTER)
async def test_a_device_rebooted_to_seq_0_is_heard_at_once(hub: Hub, last: int, hub_restarted: bool) -> None:
    """A new battery: the counter starts again at 0; every frame of the new boot is taken, the alarm too."""
    device = await hub.device()
    assert all(hub.send(device, frame(seq)) for seq in range(last + 1))
    if hub_restarted:
        await hub.restart()
        device = await hub.device()
    taken = [hub.send(device, frame(0, battery=100)), hub.send(device, frame(1, alarm=True, battery=100))]
    taken += [hub.send(device, frame(seq, battery=100)) for seq in range(2, 6)]
    assert taken == [True] * 6
    assert alarms(hub) == [1] and hub.replayed() == 0


@pytest.mark.parametrize("last", REBOOTED_AFTER)
async def test_a_new_transport_session_lets_the_counter_start_anywhere(hub: Hub, last: int) -> None:
    """The boot frame (seq 0) was lost; the device's new connection says a session began: seq 1 is heard."""
    device = await hub.device()
    assert all(hub.send(device, frame(seq)) for seq in range(last + 1))
    await hub.restart()  # the persisted window below the highest number is all "seen"
    device = await hub.device()
    hub.service.states.begin_session(device.id)
    assert hub.send(device, frame(1, alarm=True, battery=100))
    assert hub.send(device, frame(2, battery=100))
    assert alarms(hub) == [1] and hub.replayed() == 0


async def test_backwards_inside_one_session_is_refused(hub: Hub) -> None:
    """Without a boot or a new session, an old number is a replay, in the window and far behind it."""
    device = await hub.device()
    assert all(hub.send(device, frame(seq)) for seq in range(200))
    assert not hub.send(device, frame(150, alarm=True))  # seen, in the window
    assert not hub.send(device, frame(20, alarm=True))  # far behind the window
    assert not hub.send(device, frame(8))  # small, yet no boot frame came before it
    # A session's first frame alone is believed: the next one going backwards is refused again.
    hub.service.states.begin_session(device.id)
    assert hub.send(device, frame(100))
    assert not hub.send(device, frame(100))
    assert alarms(hub) == [] and hub.replayed() == 4


async def test_duplicates_inside_a_session_are_taken_once(hub: Hub) -> None:
    """The boot frame twice, a number twice, and MQTT DUP redeliveries after a reconnect: each taken once."""
    device = await hub.device()
    boot = frame(0, fmt="json")
    assert hub.send(device, boot)
    assert not hub.send(device, boot)  # the boot frame retransmitted
    assert [hub.send(device, frame(seq)) for seq in (1, 3, 2, 3, 2)] == [True, True, True, False, False]
    # A reconnect: the device re-sends what was unacknowledged with DUP set, then goes on.
    hub.service.states.begin_session(device.id)
    assert not hub.send(device, frame(3, alarm=True), redelivery=True)
    assert not hub.send(device, boot, redelivery=True)
    assert hub.send(device, frame(4, alarm=True))
    assert not hub.send(device, frame(4, alarm=True))
    assert alarms(hub) == [4] and hub.replayed() == 6


async def test_a_second_boot_with_the_same_first_frame_is_still_heard(hub: Hub) -> None:
    """A clockless device reboots (a brownout) and sends the very same seq-0 frame: what follows is heard."""
    device = await hub.device()
    boot = frame(0)
    assert [hub.send(device, payload) for payload in (boot, frame(1), frame(2))] == [True] * 3
    assert not hub.send(device, boot)  # identical bytes: the first copy's content was taken
    assert hub.send(device, frame(1, alarm=True))
    assert hub.send(device, frame(2))
    assert alarms(hub) == [1]


async def test_seq_0_with_other_bytes_begins_a_session_even_marked_dup(hub: Hub) -> None:
    """DUP only says "maybe sent before": a seq-0 frame the hub never saw is a new boot."""
    device = await hub.device()
    assert all(hub.send(device, frame(seq)) for seq in range(30))
    assert hub.send(device, frame(0, alarm=True), redelivery=True)
    assert hub.send(device, frame(1))
    assert alarms(hub) == [0]
