"""Alert latency: panic press (paho → embedded broker) → the outbox's SDK call to Twilio (Prism), p50/p99.

The hub runs in this process as `iothub serve` builds it (build_hub: embedded amqtt, rules, cases, outbox
with the Twilio SDK pointed at Prism). Each press comes from its own panic button in its own building, so
each opens a new urgent case whose first step texts that building's leader. Timestamps are taken on the
hub side: the outbox's SMS channel is wrapped (here only) to note when a request is handed to the SDK, and
a pipeline hook notes when the press was accepted by ingest (the reference: publish → pipeline accept).
Two phases, each pressing every button once: alone, then under background telemetry published by a
separate process (paho, QoS 0) at ``--load`` msg/s; the rate the hub really accepted is measured.
Also counted per press: the SQL statements the case consumer and the outbox worker ran between the press
and the request, and full (generation 2) garbage collections that fell inside a press.

    python bench/alert_latency.py [--presses 200] [--load 10000] [--database-url URL] [--gc-freeze]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _alert_clients import load_paho, load_raw, press_buttons
from _alert_probes import LaneCounts, Probe, StampedChannel

from drivers import DRIVERS
from hub.app import Hub, build_hub
from hub.config import Settings
from provisioning.devices import Actor
from provisioning.enroll import DeviceSpec, enroll_direct
from provisioning.places import PlaceData, create_place
from provisioning.responders import ResponderData, create_responder
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer
from tests.servers.prism import PrismServer

__all__ = ["main"]

ACTOR = Actor("bench", "cli")
SID, TOKEN = "AC" + "0123456789abcdef" * 2, "bench-auth-token"


async def _street(
    hub: Hub, buttons: int, loaders: int
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """A building per button (its leader, a household, the button); a household of telemetry devices."""
    made: list[tuple[str, str, str]] = []
    load: list[tuple[str, str]] = []
    async with hub.db.session() as session:
        parent = None
        for level in ("district", "street", "community", "grid"):
            await create_place(
                session,
                PlaceData(code=f"L-{level}", level=level, name=level, parent=parent),
                actor="bench",
                channel="cli",
            )
            parent = f"L-{level}"
        for n in range(buttons + 1):
            building, home = f"L-B{n:04d}", f"L-B{n:04d}-H"
            await create_place(
                session,
                PlaceData(code=building, level="building", name=building, parent=parent),
                actor="bench",
                channel="cli",
            )
            await create_place(
                session,
                PlaceData(code=home, level="household", name=home, parent=building),
                actor="bench",
                channel="cli",
            )
            if n == buttons:
                break
            phone = f"+86139{n:08d}"
            data = ResponderData(name=f"leader {n}", phone=phone, role="building_leader", places=[building])
            await create_responder(session, data, actor="bench", channel="cli")
            made.append((f"PB-{n:04d}", home, phone))
    from provisioning.credentials import CredentialStore, SecretBox

    store = CredentialStore(
        hub.db, SecretBox(hub.settings.secret_key.get_secret_value()), hub.credential_events
    )
    out = []
    for serial, home, phone in made:
        async with hub.db.session() as session:
            done = await enroll_direct(
                session,
                DeviceSpec(serial=serial, kind="panic_button", household=home),
                actor=ACTOR,
                store=store,
            )
        out.append((serial, done.secrets.mqtt_password, phone))
    for n in range(loaders):
        async with hub.db.session() as session:
            spec = DeviceSpec(serial=f"LOAD-{n:03d}", kind="smoke", household=f"L-B{buttons:04d}-H")
            done = await enroll_direct(session, spec, actor=ACTOR, store=store)
        load.append((spec.serial, done.secrets.mqtt_password))
    await hub.ingest.directory.load_all()
    await hub.evaluator.refresh_places()
    return out, load


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _phase(
    hub: Hub,
    buttons: list[tuple[str, str]],
    presser: Connection,
    stamps: dict[str, float],
    accepted: dict[str, float],
    probe: Probe,
    cap_s: float,
    seq0: int,
) -> dict[str, list[float]]:
    """Press every button once, one at a time; wait for its SMS request before the next press.

    A phase stops after ``cap_s`` seconds: a hub that cannot keep up with the load would run for hours.
    """
    out: dict[str, list[float]] = {"sms": [], "accept": [], "statements": [], "gc": []}
    stamps.clear()
    accepted.clear()
    probe.collections.clear()
    stop_at = time.perf_counter() + cap_s
    for n, (serial, phone) in enumerate(buttons):
        if time.perf_counter() > stop_at:
            break
        # Sequence numbers only grow (the hub refuses a replayed one): each phase starts past the last.
        payload = DRIVERS["panic_button"].encode({"seq": seq0 + n, "events": ["pressed_long"]})
        before = probe.statements
        presser.send((serial, payload))
        t0 = await asyncio.to_thread(presser.recv)  # the publish time, taken in the buttons' process
        deadline = t0 + 10
        while phone not in stamps:
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.0005)
        if phone not in stamps:  # the hub is behind the load (its broker's backlog): the phase ends here
            print(f"no SMS request for {serial} within 10 s: the hub is behind; phase stopped")
            break
        out["sms"].append((stamps[phone] - t0) * 1000)
        out["accept"].append((accepted.get(serial, stamps[phone]) - t0) * 1000)
        out["statements"].append(probe.statements - before)
        await asyncio.sleep(random.uniform(0.02, 0.05))
    out["gc"] = [seconds * 1000 for _start, seconds in probe.collections]
    # Each case is cancelled so that the next phase's press of the same button opens a new one.
    async with hub.db.session() as session:
        from sqlalchemy import select

        from hub.db.cases import Case

        codes = list((await session.scalars(select(Case.code).where(Case.state == "discovered"))).all())
    for code in codes:
        await hub.cases.desk.act(code, "cancel", actor="bench", channel="cli", note="benchmark")
    return out


def _accepted(hub: Hub) -> float:
    value = hub.metrics.registry.get_sample_value(
        "iothub_ingest_messages_total", {"transport": "mqtt", "kind": "smoke"}
    )
    return value or 0.0


async def run(args: argparse.Namespace) -> None:
    """Build the hub, the street and the clients; run both phases; print the figures."""
    root = Path(tempfile.mkdtemp(prefix="alert-latency-"))
    prism = PrismServer(root / "prism")
    prism.start()
    url = args.database_url or f"sqlite+aiosqlite:///{root / 'hub.db'}"
    mosquitto = None
    mqtt: dict[str, Any] = {"port": 0}
    if args.broker == "mosquitto":
        # External mode, as a site with this much telemetry runs: Mosquitto (anonymous here) in front, the
        # hub its subscriber through its own MQTT client.
        mosquitto = MosquittoServer(root / "mosquitto")
        mosquitto.start()
        mqtt = {"mode": "external", "port": mosquitto.port, "client_id": "bench-hub", "qos": 1}
    influx = None
    telemetry: dict[str, Any] = {}
    if args.telemetry == "influxdb":
        influx = InfluxServer(root / "influxdb")
        influx.start()
        telemetry = {
            "telemetry": {"backend": "influxdb"},
            "influx": {"url": influx.url, "create_database": True, "spool_dir": str(root / "spool")},
        }
    settings = Settings(
        **telemetry,
        database={"url": url},
        mqtt=mqtt,
        coap={"enabled": False},
        var_dir=root,
        web={"public_base_url": "https://hub.example.org"},
        twilio={
            "account_sid": SID,
            "auth_token": TOKEN,
            "from_number": "+15005550006",
            "base_url": prism.url,
            "policy": {"bundle_window_s": 0},
        },
    )
    hub = build_hub(settings)
    await hub.start()
    stamps: dict[str, float] = {}
    accepted: dict[str, float] = {}
    hub.outbox.channels["sms"] = StampedChannel(hub.outbox.channels["sms"], stamps)

    def hook(device: Any, reading: Any, now: float) -> None:
        if device.kind == "panic_button":
            accepted.setdefault(device.serial, time.perf_counter())

    hub.ingest.pipeline.hooks.insert(0, hook)
    try:
        made, load = await _street(hub, args.presses, args.loaders)
        if mosquitto is not None:
            port = mosquitto.port
            await asyncio.wait_for(hub.mqtt.connected.wait(), 30)  # type: ignore[union-attr]
        else:
            port = int(hub.listening["mqtt"].rsplit(":", 1)[1])
        ctx = mp.get_context("spawn")
        presser, child = ctx.Pipe()
        pressing = ctx.Process(target=press_buttons, args=(port, [(s, p) for s, p, _ in made], child))
        pressing.start()
        if await asyncio.to_thread(presser.recv) != "ready":
            raise SystemExit("the buttons' process did not start")
        buttons = [(serial, phone) for serial, _, phone in made]
        await asyncio.sleep(0.5)
        # As ``iothub serve`` does once the hub is up (hub/cli.py); --no-gc-freeze shows the difference.
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        probe = Probe(hub.db.engine.sync_engine)
        press_all = partial(_phase, hub, buttons, presser, stamps, accepted, probe, args.phase_cap_s)
        results = {"alone": await press_all(1000)}
        stop = ctx.Event()
        counters = [ctx.Value("q", 0) for _ in range(args.procs)]
        shares = [load[i :: args.procs] for i in range(args.procs)]
        procs = [
            ctx.Process(
                target=load_raw if args.loader == "raw" else load_paho,
                args=(port, share, args.load / args.procs, stop, counter),
            )
            for share, counter in zip(shares, counters, strict=True)
        ]
        for proc in procs:
            proc.start()
        await asyncio.sleep(3.0)  # connected and at rate
        before, t0 = _accepted(hub), time.perf_counter()
        lane = LaneCounts(hub)
        paused = getattr(hub.mqtt, "paused", 0)
        results["loaded"] = await press_all(1000 + len(buttons))
        yields, short, lapsed = lane.since()
        paused = getattr(hub.mqtt, "paused", 0) - paused
        probe.close()
        rate = (_accepted(hub) - before) / (time.perf_counter() - t0)
        stop.set()
        for proc in procs:
            await asyncio.to_thread(proc.join, 10)
        presser.send(None)
        await asyncio.to_thread(pressing.join, 10)
    finally:
        await hub.stop()
        prism.close()
        if mosquitto is not None:
            mosquitto.close()
        if influx is not None:
            influx.close()
    backend = url.split(":", 1)[0]
    frozen = ", start-up objects frozen (gc.freeze)" if args.gc_freeze else ""
    print(f"alert latency, {args.presses} presses per phase, {backend}{frozen}; ms")
    print(
        f"{'phase':<8} {'p50 sms':>8} {'p99 sms':>8} {'max':>8} {'p50 accept':>11} {'p99 accept':>11} {'ratio p99':>10}"
    )
    for phase, data in results.items():
        if not data["sms"]:
            print(f"{phase:<8} no press measured")
            continue
        p50, p99 = _pct(data["sms"], 50), _pct(data["sms"], 99)
        a50, a99 = _pct(data["accept"], 50), _pct(data["accept"], 99)
        print(
            f"{phase:<8} {p50:8.1f} {p99:8.1f} {max(data['sms']):8.1f} {a50:11.2f} {a99:11.2f} {p99 / max(a99, 1e-9):10.1f}"
        )
    for phase, data in results.items():
        if not data["sms"]:
            continue
        if len(data["sms"]) < len(buttons):
            print(f"{phase}: only {len(data['sms'])} presses measured (see above, or --phase-cap-s)")
        gcs = data["gc"]
        longest = f", longest {max(gcs):.0f} ms" if gcs else ""
        print(
            f"{phase}: {statistics.median(data['statements']):.0f} SQL statements per press on the path "
            f"(median; max {max(data['statements']):.0f}); {len(gcs)} full collections in the phase{longest}"
        )
    print(
        f"background telemetry accepted by the hub during the loaded phase: {rate:,.0f} msg/s (asked {args.load:,.0f})"
    )
    print(
        f"telemetry reading yielded to urgent work {yields} times in the loaded phase, {short} cut short at 50 ms, {lapsed} holds lapsed"
    )
    print(f"reading paused {paused} times for the telemetry store (backpressure) in the loaded phase")
    print(f"mean sms alone {statistics.mean(results['alone']['sms']):.1f} ms; goal p99 < 50 ms")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--load", type=float, default=10_000.0)
    parser.add_argument("--loaders", type=int, default=20, help="background devices")
    parser.add_argument("--procs", type=int, default=2, help="background publisher processes")
    parser.add_argument("--database-url")
    parser.add_argument("--phase-cap-s", type=float, default=300.0, help="stop a phase after this long")
    parser.add_argument(
        "--gc-freeze",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gc.freeze() once the hub is up, as `iothub serve` does (default on)",
    )
    parser.add_argument(
        "--telemetry",
        choices=["sqlite", "influxdb"],
        default="sqlite",
        help="the hub's telemetry store (influxdb: a local influxd started by the bench)",
    )
    parser.add_argument(
        "--broker",
        choices=["embedded", "mosquitto"],
        default="embedded",
        help="the hub's embedded amqtt, or Mosquitto with the hub in external mode (needed for 10,000 msg/s)",
    )
    parser.add_argument(
        "--loader",
        choices=["raw", "paho"],
        default="raw",
        help="background publishers: MQTT frames on plain sockets (~3 µs a message) or paho clients (~30 µs)",
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
