"""Telemetry test helpers: store factories that always close, InfluxQL counts, polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.telemetry import InfluxStore, InfluxStoreConfig
from tests.servers.influxdb import InfluxServer

InfluxFactory = Callable[..., Awaitable[InfluxStore]]


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``predicate`` until true or ``timeout``; return its last value (assert on that)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if predicate() or loop.time() >= deadline:
            return predicate()
        await asyncio.sleep(0.01)


def influx_count(server: InfluxServer, db: str, measurement: str, field: str = "v") -> int:
    """``SELECT count(field)`` over the whole measurement (0 when it does not exist)."""
    result = server.query(f'SELECT count("{field}") FROM "{measurement}"', db=db)
    series = result["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def influx_rows(server: InfluxServer, db: str, q: str) -> list[list[Any]]:
    """Rows of the first series of a query."""
    series = server.query(q, db=db)["results"][0].get("series")
    return list(series[0]["values"]) if series else []


@pytest.fixture
async def make_influx_store(
    influxdb: InfluxServer, influx_database: str, tmp_path: Path
) -> AsyncIterator[InfluxFactory]:
    """Build started InfluxStores on the test's database (spool in tmp_path); close them at the end."""
    stores: list[InfluxStore] = []

    async def make(**overrides: Any) -> InfluxStore:
        params: dict[str, Any] = {
            "url": influxdb.url,
            "database": influx_database,
            "spool_dir": tmp_path / "spool",
            "flush_interval": 0.05,
            "retry_max": 0.2,
            "timeout": 5.0,
        }
        params.update(overrides)
        store = InfluxStore(InfluxStoreConfig(**params))
        await store.start()
        stores.append(store)
        return store

    yield make
    influxdb.start()  # a test may have left it stopped; closing stores then replays their spools
    for store in stores:
        await store.close()
