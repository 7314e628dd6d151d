"""Points/s through InfluxStore into a real influxd, against raw httpx POSTs of pre-encoded lines.

Run from the repository root: ``.venv/bin/python bench/influx_write.py [--points N]``.
Also compares the line encoder with influxdb-client's ``Point`` (encoding only).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.telemetry import InfluxStore, InfluxStoreConfig, LineEncoder, TelemetryPoint
from tests.servers.influxdb import InfluxServer

BATCH = 5000
T0 = 1_700_000_000.0


def fleet_points(n: int) -> list[TelemetryPoint]:
    """Smoke sensors of a street: ~112 grids, 20 k devices, three fields each."""
    return [
        TelemetryPoint(
            f"smoke-{i % 20_000:05d}",
            "smoke",
            T0 + i * 0.001,
            {"temperature": 20.0 + (i % 100) / 10, "battery": 90 - i % 50, "alarm": i % 997 == 0},
            {"grid": f"G{i % 112:03d}"},
        )
        for i in range(n)
    ]


def bench_encoders(points: list[TelemetryPoint]) -> tuple[float, float | None]:
    """Points/s of LineEncoder and of influxdb-client's Point.to_line_protocol()."""
    start = time.perf_counter()
    encoder = LineEncoder()
    for p in points:
        encoder.encode(p)
    ours = len(points) / (time.perf_counter() - start)
    try:
        from influxdb_client import Point
    except ImportError:
        return ours, None
    start = time.perf_counter()
    for p in points:
        point = Point(p.kind).tag("device_id", p.device_id).time(round(p.ts * 1e9))
        for k, v in p.tags.items():
            point.tag(k, v)
        for k, v in p.fields.items():
            point.field(k, v)
        point.to_line_protocol()
    return ours, len(points) / (time.perf_counter() - start)


async def bench_reference(server: InfluxServer, db: str, points: list[TelemetryPoint]) -> float:
    """Raw httpx POSTs of lines encoded beforehand, in batches of BATCH."""
    encoder = LineEncoder()
    bodies = [
        "".join(encoder.encode(p) + "\n" for p in points[i : i + BATCH]).encode()
        for i in range(0, len(points), BATCH)
    ]
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        start = time.perf_counter()
        for body in bodies:
            resp = await client.post("/write", params={"db": db, "precision": "ns"}, content=body)
            resp.raise_for_status()
        return len(points) / (time.perf_counter() - start)


async def bench_store(server: InfluxServer, db: str, points: list[TelemetryPoint], spool: Path) -> float:
    """write() every point (encoding included), then flush(); the clock stops when InfluxDB has all."""
    config = InfluxStoreConfig(
        url=server.url, database=db, batch_size=BATCH, queue_max=len(points) + 1, spool_dir=spool
    )
    store = InfluxStore(config)
    await store.start()
    try:
        start = time.perf_counter()
        for i, p in enumerate(points):
            store.write(p)
            if i % BATCH == 0:
                await asyncio.sleep(0)  # like an ingest loop, give the writer turns
        await store.flush()
        rate = len(points) / (time.perf_counter() - start)
        if store.stats.written != len(points):
            raise SystemExit(f"store wrote {store.stats.written} of {len(points)}")
        return rate
    finally:
        await store.close()


def count(server: InfluxServer, db: str) -> int:
    series = server.query('SELECT count("temperature") FROM "smoke"', db=db)["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    points = fleet_points(args.points)
    ours, theirs = bench_encoders(points)
    print(f"encoder: LineEncoder {ours:,.0f} points/s", end="")
    if theirs:
        print(f"; influxdb-client Point {theirs:,.0f} points/s; ratio {ours / theirs:.1f}x")
    with (
        tempfile.TemporaryDirectory(prefix="bench-influx-") as tmp,
        InfluxServer(Path(tmp) / "influxd") as server,
    ):
        refs, stores = [], []
        for r in range(args.rounds):  # alternate, so warm-up and compaction hit both alike
            for name, bucket in (("ref", refs), ("store", stores)):
                db = f"bench_{name}_{r}"
                server.create_database(db)
                if name == "ref":
                    bucket.append(await bench_reference(server, db, points))
                else:
                    bucket.append(await bench_store(server, db, points, Path(tmp) / f"spool{r}"))
                if count(server, db) != len(points):
                    raise SystemExit(f"{db}: InfluxDB holds {count(server, db)} of {len(points)} points")
        ref, best = max(refs), max(stores)
        print(f"reference (raw httpx POST of pre-encoded {BATCH}-line batches): {ref:,.0f} points/s")
        print(f"InfluxStore (write + encode + batch + POST, flush): {best:,.0f} points/s")
        print(
            f"ratio store/reference: {best / ref:.2f}  (best of {args.rounds}; {len(points):,} points each)"
        )


if __name__ == "__main__":
    asyncio.run(main())
