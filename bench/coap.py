"""CoAP uplinks/s into the hub (plain mode, token checked, decoded, stored) against a bare aiocoap server.

Run from the repository root: ``.venv/bin/python bench/coap.py [--requests N] [--concurrency C]``.
The client (aiocoap, many requests in flight) runs in its own processes; the reference is an aiocoap
server in this process answering 2.04 to every POST with an empty resource, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiocoap
from aiocoap import resource

from drivers import DRIVERS
from hub.config import CoapSettings, DatabaseSettings
from hub.db import Database
from hub.ingest.coap import CoapIngest
from hub.ingest.service import IngestService
from hub.metrics import HubMetrics
from hub.telemetry import SQLiteStore, SQLiteStoreConfig
from provisioning.credentials import CredentialEvents, CredentialStore, SecretBox
from provisioning.devices import Actor
from provisioning.enroll import DeviceSpec, enroll_direct
from provisioning.places import PlaceData, create_place

KEY = "bench-secret-key-not-for-production"
ACTOR = Actor("bench", "cli")


class Empty(resource.Resource):  # type: ignore[misc]
    """The reference: accepts any POST, does nothing."""

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(code=aiocoap.CHANGED)


async def _client(port: int, targets: list[tuple[str, str]], total: int, concurrency: int) -> float:
    """Send ``total`` POSTs, ``concurrency`` at a time; returns the seconds it took."""
    context = await aiocoap.Context.create_client_context()
    smoke = DRIVERS["smoke"]
    counter = iter(range(total))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for i in counter:
            serial, token = targets[i % len(targets)]
            payload = smoke.encode(
                {"seq": i // len(targets) + 1, "battery": 50 + i % 50, "smoke": 0.01}, "cbor"
            )
            message = aiocoap.Message(
                code=aiocoap.POST, uri=f"coap://127.0.0.1:{port}/t/{serial}", payload=payload
            )
            message.opt.uri_query = (f"t={token}",)
            message.opt.content_format = 60
            response = await context.request(message).response
            failures += response.code != aiocoap.CHANGED

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    await context.shutdown()
    if failures:
        print(f"  {failures} responses were not 2.04")
    return elapsed


def client_process(port: int, targets: list[tuple[str, str]], total: int, concurrency: int, out: Any) -> None:
    """Run the load in a child process and send back the seconds it took."""
    out.send(asyncio.run(_client(port, targets, total, concurrency)))


def measure(port: int, targets: list[tuple[str, str]], total: int, concurrency: int, clients: int) -> float:
    """Requests/s of ``clients`` client processes against ``port`` (the server keeps serving meanwhile)."""
    ctx = multiprocessing.get_context("spawn")
    procs, pipes = [], []
    for n in range(clients):
        receive, send = ctx.Pipe(duplex=False)
        # Each client its own devices, so sequence numbers stay increasing per device.
        share = targets[n::clients] or targets
        proc = ctx.Process(target=client_process, args=(port, share, total // clients, concurrency, send))
        proc.start()
        procs.append(proc)
        pipes.append(receive)
    slowest = max(float(p.recv()) for p in pipes)
    for proc in procs:
        proc.join()
    return (total // clients) * clients / slowest


async def _wait(
    port: int, targets: list[tuple[str, str]], total: int, concurrency: int, clients: int
) -> float:
    return await asyncio.to_thread(measure, port, targets, total, concurrency, clients)


async def enroll_fleet(db: Database, devices: int) -> list[tuple[str, str]]:
    """A household per 4 devices; returns (serial, token) of smoke sensors enrolled for CoAP."""
    store = CredentialStore(db, SecretBox(KEY), CredentialEvents())
    out = []
    async with db.session() as session:
        parent = None
        for level in ("district", "street", "community", "grid", "building"):
            code = f"B-{level}"
            await create_place(
                session,
                PlaceData(code=code, level=level, name=code, parent=parent),
                actor="bench",
                channel="cli",
            )
            parent = code
        for n in range(devices):
            household = f"B-H{n // 4:04d}"
            if n % 4 == 0:
                data = PlaceData(code=household, level="household", name=household, parent=parent)
                await create_place(session, data, actor="bench", channel="cli")
            spec = DeviceSpec(serial=f"SM-{n:05d}", kind="smoke", household=household, transport="coap")
            enrolled = await enroll_direct(session, spec, actor=ACTOR, store=store)
            out.append((spec.serial, enrolled.secrets.mqtt_password))
    return out


async def main(total: int, concurrency: int, devices: int, clients: int) -> None:
    """Measure the reference, then the hub, and print both and their ratio."""
    reference = await aiocoap.Context.create_server_context(
        Empty(), bind=("127.0.0.1", 0), transports=["udp6"]
    )
    interface = reference.request_interfaces[0].token_interface.message_interface
    port = interface.transport.get_extra_info("socket").getsockname()[1]
    bare = await _wait(port, [("x", "y")], total, concurrency, clients)
    await reference.shutdown()

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp}/hub.db"))
        await db.start()
        targets = await enroll_fleet(db, devices)
        events = CredentialEvents()
        store = SQLiteStore(SQLiteStoreConfig(path=Path(tmp) / "t.sqlite3", retention_days=None))
        await store.start()
        service = IngestService(
            db, store, DRIVERS, HubMetrics(), events, time.time, state_flush_interval=3600
        )
        await service.start()
        coap = CoapIngest(
            CoapSettings(port=0, allow_plain=True), service, SecretBox(KEY), events, Path(tmp) / "coap"
        )
        await coap.start()
        assert coap.port is not None
        hub = await _wait(coap.port, targets, total, concurrency, clients)
        refused = service.dead_letters.total
        await coap.stop()
        await service.stop()
        await store.flush()
        stored = store.stats
        await store.close()
        await db.stop()

    print(f"CoAP POST, {total} requests, {clients} client processes with {concurrency} in flight each")
    print(f"  reference (aiocoap, empty resource): {bare:10.0f} req/s")
    print(f"  hub /t/{{serial}} plain + token:      {hub:10.0f} req/s   ({hub / bare:.2f} x reference)")
    print(f"  {devices} devices, {refused} refused, store: {stored}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency, args.devices, args.clients))
