"""The ingest pipeline on a real database and the SQLite telemetry store (transport-free)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

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


@pytest.fixture
async def ingest(
    db: Database, tmp_path: Path
) -> AsyncIterator[tuple[IngestService, SQLiteStore, EpochClock]]:
    """A started ingest service with two enrolled smoke sensors (S-1, S-2)."""
    street = await build_street(db)
    await enroll(db, "S-1", "smoke", street.households[0])
    await enroll(db, "S-2", "smoke", street.households[1])
    clock = EpochClock(1_790_000_000.0)
    store = SQLiteStore(SQLiteStoreConfig(path=tmp_path / "t.sqlite3", retention_days=None), clock=clock)
    await store.start()
    service = IngestService(
        db, store, DRIVERS, HubMetrics(), CredentialEvents(), clock, state_flush_interval=3600
    )
    await service.start()
    try:
        yield service, store, clock
    finally:
        await service.stop()
        await store.close()


def rejected(service: IngestService, reason: str) -> float:
    """How many uplinks were refused for ``reason``."""
    value = service.pipeline.metrics.registry.get_sample_value(
        "iothub_ingest_rejected_total", {"transport": "test", "reason": reason}
    )
    return value or 0.0


async def test_good_uplink_is_stored_and_changes_state(
    ingest: tuple[IngestService, SQLiteStore, EpochClock],
) -> None:
    service, store, clock = ingest
    seen: list[tuple[str, Reading]] = []
    service.pipeline.hooks.append(lambda device, reading, now: seen.append((device.serial, reading)))
    device = await service.directory.lookup("S-1")
    assert device is not None and device.kind == "smoke"
    async with service.bus.subscribe() as live:
        reading = service.pipeline.accept(
            device, SMOKE.encode({"seq": 1, "battery": 81, "smoke": 0.02}), "test"
        )
        event = live.get_nowait()
    assert reading.metrics["battery"] == 81
    assert seen == [("S-1", reading)]
    assert event["device"] == "S-1" and event["back_online"] is True
    status = service.states.get(device.id)
    assert status is not None and status.online and status.last_seen == clock.now
    await store.flush()
    assert await store.query("S-1", "battery", clock.now - 1, clock.now + 1) == [(clock.now, 81)]


async def test_bad_payloads_are_refused_counted_and_kept(
    ingest: tuple[IngestService, SQLiteStore, EpochClock],
) -> None:
    service, _store, _clock = ingest
    device = await service.directory.lookup("S-1")
    assert device is not None
    bad = {
        b"{not json": "bad_json",
        json.dumps({"seq": 1, "battery": 250}).encode(): "out_of_range",
        json.dumps({"seq": 1, "battery": "full"}).encode(): "wrong_type",
        b"{" + b" " * (64 * 1024) + b"}": "too_large",
    }
    for payload, reason in bad.items():
        with pytest.raises(DecodeError) as info:
            service.pipeline.accept(device, payload, "test")
        assert info.value.reason == reason
        assert rejected(service, reason) == 1
        # The ingest goes on: a good uplink right after each bad one is accepted.
        good = SMOKE.encode({"seq": len(service.dead_letters), "battery": 70})
        assert service.pipeline.accept(device, good, "test").metrics["battery"] == 70
    letters = service.dead_letters.recent(10)
    assert [letter.reason for letter in reversed(letters)] == list(bad.values())
    assert letters[-1].payload == b"{not json"
    assert letters[0].size == 64 * 1024 + 2 and len(letters[0].payload) < letters[0].size


async def test_replayed_sequence_numbers(ingest: tuple[IngestService, SQLiteStore, EpochClock]) -> None:
    service, _store, _clock = ingest
    device = await service.directory.lookup("S-2")
    assert device is not None

    def send(seq: int) -> None:
        service.pipeline.accept(
            device,
            SMOKE.encode(
                {"seq": seq, "battery": 90, "smoke": 0.0, "temperature": 21.5, "rssi": -80}, "binary"
            ),
            "test",
        )

    for seq in (100, 101, 99):  # 99 arrives late but is new: accepted
        send(seq)
    for seq in (101, 99, 20):  # seen, seen, older than the window
        with pytest.raises(DecodeError) as info:
            send(seq)
        assert info.value.reason == "replayed"
    send(2)  # a rebooted device starts again from a small number
    send(3)
    assert rejected(service, "replayed") == 3


async def test_state_and_replay_window_survive_a_restart(
    ingest: tuple[IngestService, SQLiteStore, EpochClock], db: Database
) -> None:
    service, store, clock = ingest
    device = await service.directory.lookup("S-1")
    assert device is not None
    service.pipeline.accept(device, SMOKE.encode({"seq": 500, "battery": 55, "events": ["tamper"]}), "test")
    assert await service.states.flush() == 1
    again = IngestService(
        db, store, DRIVERS, HubMetrics(), CredentialEvents(), clock, state_flush_interval=3600
    )
    await again.start()
    try:
        status = again.states.get(device.id)
        assert status is not None
        assert (
            status.last_seen == clock.now
            and status.metrics["battery"] == 55
            and status.last_event == "tamper"
        )
        with pytest.raises(DecodeError):
            again.pipeline.accept(device, SMOKE.encode({"seq": 500, "battery": 55}), "test")
        assert again.pipeline.accept(device, SMOKE.encode({"seq": 501, "battery": 54}), "test").seq == 501
    finally:
        await again.stop()


async def test_a_wrong_device_clock_is_not_believed(
    ingest: tuple[IngestService, SQLiteStore, EpochClock],
) -> None:
    service, store, clock = ingest
    device = await service.directory.lookup("S-2")
    assert device is not None
    good_ts = clock.now - 60
    service.pipeline.accept(device, SMOKE.encode({"seq": 1, "ts": good_ts, "battery": 60}), "test")
    service.pipeline.accept(device, SMOKE.encode({"seq": 2, "ts": 1_000_000_000, "battery": 61}), "test")
    await store.flush()
    samples = await store.query("S-2", "battery", 0, clock.now + 1)
    assert samples == [(good_ts, 60), (clock.now, 61)]


async def test_a_failing_hook_does_not_stop_ingest(
    ingest: tuple[IngestService, SQLiteStore, EpochClock],
) -> None:
    service, _store, _clock = ingest

    def broken(device: DeviceEntry, reading: Reading, now: float) -> None:
        raise RuntimeError("rule bug")

    service.pipeline.hooks.append(broken)
    device = await service.directory.lookup("S-1")
    assert device is not None
    assert service.pipeline.accept(device, SMOKE.encode({"seq": 7, "battery": 40}), "test").seq == 7


async def test_unknown_serial_is_remembered_briefly(
    ingest: tuple[IngestService, SQLiteStore, EpochClock], db: Database
) -> None:
    service, _store, _clock = ingest
    assert await service.directory.lookup("NOPE") is None
    enrolled = await enroll(db, "NOPE", "door", "T-D-S-C-G-B-U01")
    # Negative cache: not looked up again at once; a refresh (enrollment event) makes it known.
    assert await service.directory.lookup("NOPE") is None
    entry = await service.directory.refresh(enrolled.device.id)
    assert entry is not None and entry.kind == "door" and entry.accepting
