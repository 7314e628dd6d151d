"""SQLiteStore: write, raw and bucketed queries, batching, retention purge with an injected clock."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.errors import InvalidInput, StoreUnavailable
from hub.telemetry import SQLiteStore, SQLiteStoreConfig, TelemetryPoint, TelemetryStore
from tests.telemetry.conftest import eventually

BASE = 1_700_000_040.0  # a multiple of 60
DAY = 86400.0

Factory = Callable[..., Awaitable[SQLiteStore]]


@pytest.fixture
async def make_store(tmp_path: Path) -> AsyncIterator[Factory]:
    stores: list[SQLiteStore] = []

    async def make(clock: Callable[[], float] = lambda: BASE, **overrides: Any) -> SQLiteStore:
        params: dict[str, Any] = {"path": tmp_path / "telemetry.sqlite3", "flush_interval": 0.05} | overrides
        store = SQLiteStore(SQLiteStoreConfig(**params), clock=clock)
        await store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


async def test_is_a_telemetry_store(make_store: Factory) -> None:
    store = await make_store()
    assert isinstance(store, TelemetryStore)
    assert (await store.health())[0] is True


async def test_write_and_query_raw_and_buckets(make_store: Factory, tmp_path: Path) -> None:
    store = await make_store()
    for i in range(12):
        store.write(TelemetryPoint("door-9", "door", BASE + 10 * i, {"v": float(i), "open": i % 2 == 0}))
    store.write(TelemetryPoint("door-9", "door", BASE, {"label": "front", "n": 3}, {"grid": "g1"}))
    store.write(TelemetryPoint("door-8", "door", BASE, {"v": 99.0}))
    await store.flush()
    assert await store.query("door-9", "v", BASE, BASE + 110) == [
        (BASE + 10 * i, float(i)) for i in range(11)
    ]
    assert await store.query("door-9", "v", BASE, BASE + 120, every=60) == [(BASE, 2.5), (BASE + 60, 8.5)]
    assert await store.query("door-9", "open", BASE, BASE + 20) == [(BASE, True), (BASE + 10, False)]
    assert await store.query("door-9", "label", BASE, BASE + 1) == [(BASE, "front")]
    assert await store.query("door-9", "n", BASE, BASE + 1) == [(BASE, 3)]
    assert await store.query("door-9", "open", BASE, BASE + 120, every=60) == []  # mean of numbers only
    with sqlite3.connect(tmp_path / "telemetry.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_same_point_twice_is_one_row(make_store: Factory) -> None:
    store = await make_store()
    store.write(TelemetryPoint("d", "smoke", BASE, {"v": 1.0}))
    store.write(TelemetryPoint("d", "smoke", BASE, {"v": 2.0}))
    await store.flush()
    assert await store.query("d", "v", BASE, BASE + 1) == [(BASE, 2.0)]  # last write wins, as in InfluxDB


async def test_batches_by_size(make_store: Factory) -> None:
    store = await make_store(batch_size=10, flush_interval=3600)
    for i in range(25):
        store.write(TelemetryPoint("d", "smoke", BASE + i, {"v": 1.0}))
    assert await eventually(lambda: store.stats.written == 20)
    assert store.stats.batches == 2
    await store.flush()
    assert store.stats.written == 25


async def test_full_queue_refuses(make_store: Factory) -> None:
    store = await make_store(queue_max=3, flush_interval=3600, batch_size=100)
    with pytest.raises(StoreUnavailable):
        for i in range(10):  # no await: the writer cannot drain meanwhile
            store.write(TelemetryPoint("d", "smoke", BASE + i, {"v": 1.0}))
    assert store.stats.dropped == 1
    with pytest.raises(InvalidInput):
        store.write(TelemetryPoint("d", "smoke", BASE, {"v": float("inf")}))


async def test_retention_purge_uses_the_clock(make_store: Factory) -> None:
    now = [BASE]
    store = await make_store(clock=lambda: now[0], retention_days=2)
    for day in range(5):
        store.write(TelemetryPoint("d", "smoke", BASE + day * DAY, {"v": float(day)}))
    await store.flush()
    assert await store.purge() == 0
    now[0] = BASE + 4 * DAY - 1  # the cutoff is now BASE + 2 days - 1 s
    assert await store.purge() == 2
    kept = await store.query("d", "v", 0, BASE + 10 * DAY)
    assert [v for _, v in kept] == [2.0, 3.0, 4.0]


async def test_data_survives_reopen(make_store: Factory) -> None:
    first = await make_store()
    first.write(TelemetryPoint("d", "smoke", BASE, {"v": 5.0}))
    await first.close()
    second = await make_store()
    assert await second.query("d", "v", BASE, BASE + 1) == [(BASE, 5.0)]
