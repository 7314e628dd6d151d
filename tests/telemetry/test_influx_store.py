"""InfluxStore against a real InfluxDB: batching, outage spooling and replay, dead letters, auth."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.errors import InvalidInput
from hub.telemetry import InfluxStore, InfluxStoreConfig, TelemetryPoint
from tests.servers.influxdb import InfluxServer
from tests.telemetry.conftest import InfluxFactory, eventually, influx_count

T0 = 1_700_000_000.0


def _point(i: int, device: str = "smoke-1", value: float | str | None = None) -> TelemetryPoint:
    return TelemetryPoint(
        device, "smoke", T0 + i, {"v": float(i) if value is None else value}, {"grid": "g7"}
    )


async def test_batches_by_size(
    make_influx_store: InfluxFactory, influxdb: InfluxServer, influx_database: str
) -> None:
    store = await make_influx_store(batch_size=10, flush_interval=3600)
    for i in range(25):
        store.write(_point(i))
    assert await eventually(lambda: store.stats.written == 20)
    assert store.stats.batches == 2
    assert influx_count(influxdb, influx_database, "smoke") == 20  # the last 5 wait for size or age
    await store.flush()
    assert store.stats.batches == 3
    assert influx_count(influxdb, influx_database, "smoke") == 25


async def test_batches_by_age(
    make_influx_store: InfluxFactory, influxdb: InfluxServer, influx_database: str
) -> None:
    store = await make_influx_store(batch_size=1000, flush_interval=0.05)
    for i in range(5):
        store.write(_point(i))
    assert await eventually(lambda: store.stats.written == 5)  # no flush(): only the age can send them
    assert store.stats.batches == 1
    assert influx_count(influxdb, influx_database, "smoke") == 5


async def test_invalid_point_refused_at_write(make_influx_store: InfluxFactory) -> None:
    store = await make_influx_store()
    with pytest.raises(InvalidInput):
        store.write(_point(0, value=float("nan")))
    assert store.stats.written == 0


@pytest.mark.parametrize("in_flight", [1, 4])
async def test_outage_mid_stream_loses_nothing(
    make_influx_store: InfluxFactory, influxdb: InfluxServer, influx_database: str, in_flight: int
) -> None:
    """With one batch posted at a time and with several: every point once, whatever failed mid-post."""
    store = await make_influx_store(batch_size=50, flush_interval=0.01, max_in_flight=in_flight)
    total = 3000
    for i in range(total):
        store.write(_point(i))
        if i % 100 == 99:
            await asyncio.sleep(0.005)  # let the writer run while the stream goes on
        if i == 1000:
            await asyncio.to_thread(influxdb.stop)
        if i == 2000:
            assert await eventually(lambda: store.stats.spooled > 0)  # the outage hit mid-stream
            await asyncio.to_thread(influxdb.start)
    await store.flush()
    assert store.stats.spooled > 0  # the outage was really seen
    assert store.stats.replayed == store.stats.spooled
    assert store.stats.written == total  # each point written once
    assert store.spooled_batches == 0
    assert influx_count(influxdb, influx_database, "smoke") == total


async def test_spool_survives_store_restart(
    make_influx_store: InfluxFactory, influxdb: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    first = await make_influx_store()
    influxdb.stop()
    for i in range(500):
        first.write(_point(i))
    await first.close()  # InfluxDB is down: everything goes to the spool, fsynced
    assert first.stats.spooled == 500
    assert list((tmp_path / "spool").glob("*.lp"))
    influxdb.start()
    second = await make_influx_store()
    assert second.spooled_batches > 0
    await second.flush()
    assert second.stats.replayed == 500
    assert second.spooled_batches == 0
    assert not list((tmp_path / "spool").glob("*.lp"))
    assert influx_count(influxdb, influx_database, "smoke") == 500


async def test_bad_point_dead_lettered_others_written(
    make_influx_store: InfluxFactory, influxdb: InfluxServer, influx_database: str
) -> None:
    store = await make_influx_store(batch_size=100, flush_interval=3600)
    store.write(_point(0))
    await store.flush()  # "v" is now a float field
    for i in range(1, 21):
        store.write(_point(i, value="not a number" if i == 13 else None))
    await store.flush()
    assert store.stats.dead_lettered == 1
    assert store.stats.written == 20
    assert influx_count(influxdb, influx_database, "smoke") == 20
    letters = store.dead_letters.read()
    assert len(letters) == 1
    assert "field type conflict" in str(letters[0]["reason"])
    assert "not a number" in str(letters[0]["line"])


async def test_write_and_query_raw_and_buckets(make_influx_store: InfluxFactory) -> None:
    store = await make_influx_store()
    base = 1_700_000_040.0  # a multiple of 60: buckets align with it
    for i in range(12):
        store.write(TelemetryPoint("door-9", "door", base + 10 * i, {"v": float(i), "open": i % 2 == 0}))
    store.write(TelemetryPoint("door-8", "door", base, {"v": 99.0}))
    await store.flush()
    raw = await store.query("door-9", "v", base, base + 110)
    assert raw == [(base + 10 * i, float(i)) for i in range(11)]  # end is exclusive
    assert await store.query("door-9", "v", base, base + 120, every=60) == [(base, 2.5), (base + 60, 8.5)]
    assert (await store.query("door-9", "open", base, base + 20)) == [(base, True), (base + 10, False)]


@pytest.fixture(scope="module")
def secured_influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """An influxd with auth on and one admin, for this module."""
    server = InfluxServer(tmp_path_factory.mktemp("influx-auth"), admin=("admin", "s3cret"))
    server.start()
    server.create_database("secured")
    yield server
    server.close()


@pytest.mark.parametrize(
    ("credentials", "ok"),
    [
        ({"username": "admin", "password": "s3cret"}, True),
        ({"username": "admin", "password": "wrong"}, False),
        ({"token": "not-a-token"}, False),
        ({}, False),
    ],
)
async def test_health_reports_auth(
    secured_influxdb: InfluxServer, tmp_path: Path, credentials: dict[str, str], ok: bool
) -> None:
    config = InfluxStoreConfig(
        url=secured_influxdb.url, database="secured", spool_dir=tmp_path, **credentials
    )  # type: ignore[arg-type]
    store = InfluxStore(config)
    await store.start()
    try:
        healthy, detail = await store.health()
        assert healthy is ok, detail
        if not ok:
            assert "auth failed" in detail
    finally:
        await store.close()
