"""Enrollment benchmark: import 100 k devices from CSV on SQLite and PostgreSQL (goal < 30 s each).

Run from the repository root: ``python bench/enroll.py [--devices 100000]``. The street is shaped like
DESIGN.md §7 (4 communities, 112 grids, ~3 k households). The import runs through ``bulk.import_devices``,
the code path of ``iothub devices import``; the reference, measured in the same run on a fresh database,
is a raw executemany of the same device, event and audit rows without any validation.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.config import DatabaseSettings
from hub.db import Database
from hub.db.base import AuditEvent
from hub.db.devices import Device, DeviceEvent
from hub.db.places import Place
from provisioning.bulk import import_devices
from provisioning.devices import Actor
from tests.servers.postgres import PostgresDatabase

NOW = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
KIND_WEIGHTS = {"smoke": 0.45, "door": 0.35, "panic_button": 0.17, "bodycam": 0.03}
ACTOR = Actor("bench", "cli")


def street_places(
    grids: int = 112, buildings_per_grid: int = 4, households_per_building: int = 7
) -> list[dict]:
    """District → street → 4 communities → grids → buildings → households, with explicit ids and paths."""
    rows: list[dict] = []

    def add(code: str, level: str, parent: dict | None) -> dict:
        pid = len(rows) + 1
        path = (parent["path"] if parent else "/") + f"{pid}/"
        row = {
            "id": pid,
            "code": code,
            "level": level,
            "name": code,
            "parent_id": parent["id"] if parent else None,
        }
        row |= {"path": path, "contacts": [], "created_at": NOW, "updated_at": NOW}
        rows.append(row)
        return row

    district = add("D1", "district", None)
    street = add("S1", "street", district)
    communities = [add(f"C{c}", "community", street) for c in range(1, 5)]
    for g in range(grids):
        grid = add(f"G{g + 1:03d}", "grid", communities[g % 4])
        for b in range(buildings_per_grid):
            building = add(f"{grid['code']}-B{b + 1}", "building", grid)
            for h in range(households_per_building):
                add(f"{building['code']}-{(h + 1) * 100 + 1}", "household", building)
    return rows


def device_csv(count: int, households: list[str], seed: int = 7) -> bytes:
    """A CSV of ``count`` devices spread over ``households``."""
    rng = random.Random(seed)
    kinds = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()), k=count)
    out = io.StringIO()
    out.write("serial,kind,household,position,transport,model\n")
    positions = ("kitchen", "living room", "front door", "bedside", "hallway")
    for i, kind in enumerate(kinds):
        transport = "coap" if i % 5 == 0 else "mqtt"
        out.write(
            f"SN{i:08d},{kind},{households[i % len(households)]},{rng.choice(positions)},{transport},M1\n"
        )
    return out.getvalue().encode()


async def _fresh(url: str, places: list[dict]) -> Database:
    db = Database(DatabaseSettings(url=url))
    await db.start()
    async with db.session() as session:
        await session.execute(insert(Place), places)
    return db


async def run_import(url: str, places: list[dict], data: bytes) -> tuple[float, int]:
    """Time the import of ``data`` into a fresh database; returns (seconds, devices created)."""
    db = await _fresh(url, places)
    try:
        start = time.perf_counter()
        async with db.session() as session:
            report = await import_devices(session, data, actor=ACTOR, clock=lambda: NOW)
        elapsed = time.perf_counter() - start
        assert report.applied and not report.errors, report.errors[:5]
        return elapsed, report.created
    finally:
        await db.stop()


async def run_reference(url: str, places: list[dict], data: bytes) -> float:
    """Time a raw executemany of the same rows (no decoding checks, no lookups) into a fresh database."""
    db = await _fresh(url, places)
    ids = {p["code"]: p["id"] for p in places}
    lines = data.decode().splitlines()[1:]
    try:
        start = time.perf_counter()
        rows = []
        for line in lines:
            serial, kind, household, position, transport, model = line.split(",")
            rows.append(
                {
                    "serial": serial,
                    "imei": None,
                    "kind": kind,
                    "model": model,
                    "firmware": "",
                    "transport": transport,
                }
                | {"place_id": ids[household], "responder_id": None, "position": position, "state": "claimed"}
                | {
                    "created_at": NOW,
                    "updated_at": NOW,
                    "test_until": None,
                    "test_by": None,
                    "test_from": None,
                }
            )
        async with db.engine.begin() as conn:
            for i in range(0, len(rows), 5000):
                await conn.execute(insert(Device.__table__), rows[i : i + 5000])
            events = [
                {"device_id": n + 1, "at": NOW, "actor": "bench", "channel": "cli", "from_state": None}
                | {"to_state": "claimed", "note": "imported from CSV"}
                for n in range(len(rows))
            ]
            audits = [
                {
                    "at": NOW,
                    "actor": "bench",
                    "channel": "cli",
                    "action": "device.imported",
                    "object_type": "device",
                }
                | {"object_id": str(n + 1), "detail": {"serial": r["serial"]}}
                for n, r in enumerate(rows)
            ]
            for i in range(0, len(rows), 5000):
                await conn.execute(insert(DeviceEvent.__table__), events[i : i + 5000])
                await conn.execute(insert(AuditEvent.__table__), audits[i : i + 5000])
        return time.perf_counter() - start
    finally:
        await db.stop()


async def bench(backend: str, url_for: dict[str, str], places: list[dict], data: bytes) -> None:
    """Run import and reference on one backend and print the figures."""
    seconds, created = await run_import(url_for["import"], places, data)
    reference = await run_reference(url_for["reference"], places, data)
    verdict = "OK" if seconds < 30 else "OVER GOAL"
    print(
        f"{backend:10s} import {created} devices: {seconds:6.2f} s ({created / seconds:8.0f} devices/s) [{verdict}]; "
        f"raw executemany reference {reference:6.2f} s; ratio {seconds / reference:4.2f}x"
    )


def main() -> None:
    """Generate the street and CSV, then benchmark SQLite and PostgreSQL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    places = street_places()
    households = [p["code"] for p in places if p["level"] == "household"]
    grids = sum(p["level"] == "grid" for p in places)
    data = device_csv(args.devices, households)
    print(
        f"street: {grids} grids, {len(households)} households; CSV {len(data) / 1e6:.1f} MB, {args.devices} devices"
    )
    with tempfile.TemporaryDirectory() as tmp:
        urls = {k: f"sqlite+aiosqlite:///{tmp}/{k}.db" for k in ("import", "reference")}
        asyncio.run(bench("sqlite", urls, places, data))
    if not args.skip_postgres:
        with PostgresDatabase("iothub_bench") as a, PostgresDatabase("iothub_bench") as b:
            asyncio.run(
                bench("postgresql", {"import": a.asyncpg_url, "reference": b.asyncpg_url}, places, data)
            )


if __name__ == "__main__":
    main()
