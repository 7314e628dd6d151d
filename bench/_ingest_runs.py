"""Bench runs: the hub under test and the bare reference, each fed by the device fleet, with their figures."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from _ingest_fleet import HUB_USER, SECRET_KEY, Fleet
from _ingest_proc import Child, Usage
from _ingest_profile import Profiler

from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer

__all__ = ["Bench", "Run", "run_bare", "run_hub"]

MEASUREMENTS = '"smoke","door","panic_button"'


@dataclass
class Run:
    """One measured run: who consumed, how fast, at what cost."""

    broker: str
    qos: int
    mode: str
    who: str
    count: int
    expected: int
    seconds: float
    usage: Usage
    publisher: float

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Bench:
    """What every run shares: servers, fleet, options, a counter for fresh names and sequence numbers."""

    args: argparse.Namespace
    root: Path
    influx: InfluxServer
    mosquitto: MosquittoServer
    fleet: Fleet
    runs: int = 0
    ts_base: int = int(time.time()) - 43_200

    def per_device(self) -> int:
        """Messages each device sends in one run."""
        return max(1, int(self.args.messages) // len(self.fleet.devices))

    def child(self, script: str, *args: str) -> Child:
        """A child process logging to the run's own file."""
        return Child(script, list(args), self.root / f"run{self.runs}-{script.strip('_.py')}.log")

    def load(self, port: int, qos: int) -> Child:
        """The device fleet for this run, with sequence numbers above every earlier run's."""
        spec = {
            "host": "127.0.0.1",
            "port": port,
            "qos": qos,
            "devices": self.fleet.devices,
            "per_device": self.per_device(),
            "seq_from": self.runs * self.per_device(),
            "ts_base": self.ts_base,
            "fmt": self.args.format,
        }
        path = self.root / f"run{self.runs}-load.json"
        path.write_text(json.dumps(spec))
        return self.child("_ingest_load.py", str(path))


async def influx_count(client: httpx.AsyncClient, database: str) -> int:
    """Points of every kind in ``database`` (each uplink carries a battery level)."""
    q = f'SELECT count("battery") FROM {MEASUREMENTS}'
    resp = await client.get("/query", params={"db": database, "q": q})
    series = resp.json()["results"][0].get("series") or []
    return sum(int(s["values"][0][1]) for s in series)


async def wait_for_hub(hub: Child) -> dict[str, Any]:
    """Sample the hub's CPU and RSS until it says InfluxDB acknowledged the last point (or stalled)."""
    reached = asyncio.ensure_future(hub.expect("reached", timeout=3600))
    while not reached.done():
        hub.sample()
        await asyncio.wait({reached}, timeout=0.1)
    hub.sample()
    return reached.result()


def hub_settings(bench: Bench, broker: str, qos: int, database: str) -> Path:
    """Settings of the hub under test, as JSON for its child process."""
    mqtt: dict[str, object] = {"mode": "embedded", "port": 0, "qos": qos}
    if broker == "mosquitto":
        mqtt = {
            "mode": "external",
            "port": bench.mosquitto.port,
            "username": HUB_USER,
            "password": bench.fleet.hub_password,
            "client_id": f"iothub-run{bench.runs}",
            "qos": qos,
        }
    settings = {
        "database": {"url": bench.fleet.database_url},
        "telemetry": {"backend": "influxdb"},
        "influx": {
            "url": bench.influx.url,
            "database": database,
            "create_database": True,
            "flush_interval": bench.args.flush_interval,
            "spool_dir": str(bench.root / f"run{bench.runs}-spool"),
        },
        "mqtt": mqtt,
        "coap": {"enabled": False},
        "var_dir": str(bench.root / f"run{bench.runs}-var"),
        "secret_key": SECRET_KEY,
    }
    path = bench.root / f"run{bench.runs}-settings.json"
    path.write_text(json.dumps(settings))
    return path


async def run_hub(bench: Bench, broker: str, qos: int, mode: str) -> Run:
    """The hub's full pipeline; counted in InfluxDB."""
    bench.runs += 1
    database = f"bench_run{bench.runs}"
    hub = bench.child("_ingest_hub.py", str(hub_settings(bench, broker, qos, database)))
    await hub.start()
    port = int((await hub.expect("started"))["port"])
    if mode == "drained":
        await hub.send("mqtt_stop")
        await hub.expect("mqtt_stopped")
    load = bench.load(port, qos)
    await load.start()
    connected = await load.expect("connected")
    if connected["failed"]:
        raise SystemExit(f"{connected['failed']} devices could not connect; see {load.log_path}")
    expected = bench.per_device() * len(bench.fleet.devices)
    await hub.send("watch", target=expected, stall=bench.args.stall)
    await load.send("go")
    if mode == "drained":
        sent = await load.expect("sent")
        hub.mark()
        await hub.send("mqtt_start")
        t0 = float((await hub.expect("mqtt_started"))["t0"])
    else:
        hub.mark()
    profiler = None
    if bench.args.profile:
        assert hub.proc is not None
        profiler = Profiler(hub.proc.pid, bench.root / f"run{bench.runs}-hub.pyspy")
        await profiler.start()
    reached = await wait_for_hub(hub)
    last = float(reached["at"])
    if profiler is not None:
        print(f"  profile of the hub, {broker} QoS {qos} {mode}:\n{await profiler.stop()}")
    if mode == "live":
        sent = await load.expect("sent")
        t0 = float(sent["t0"])
    if reached.get("received_at") is not None:
        read = float(reached["received_at"]) - t0
        print(
            f"  hub read the last message at {read:.2f} s, InfluxDB acknowledged the last point at {last - t0:.2f} s"
        )
    await load.send("close")
    await load.close()
    await hub.send("stop")
    stats = await hub.expect("stopped")
    await hub.close()
    async with httpx.AsyncClient(base_url=bench.influx.url, timeout=60) as client:
        count = await influx_count(client, database)  # what counts is what InfluxDB holds
    if count != expected:
        print(f"  hub stats: {stats}; see {hub.log_path}")
    if stats["refused"]:
        print(f"  note: the hub refused {stats['refused']} uplinks; see {hub.log_path}")
    publisher = sent["messages"] / max(1e-9, sent["t1"] - sent["t0"])
    return Run(broker, qos, mode, "hub", count, expected, last - t0, hub.usage, publisher)


async def run_bare(bench: Bench, broker: str, qos: int, mode: str) -> Run:
    """A paho subscriber that only counts, on the same broker (or an anonymous amqtt)."""
    bench.runs += 1
    amqtt: Child | None = None
    port = bench.mosquitto.port
    if broker == "amqtt":
        amqtt = bench.child("_ingest_bare.py", "broker")
        await amqtt.start()
        port = int((await amqtt.expect("started"))["port"])
    expected = bench.per_device() * len(bench.fleet.devices)
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "username": HUB_USER,
        "password": bench.fleet.hub_password,
        "client_id": f"bare-run{bench.runs}",
        "topic": "devices/+/up",
        "qos": qos,
        "drained": mode == "drained",
        "target": expected,
        "stall": bench.args.stall,
    }
    path = bench.root / f"run{bench.runs}-bare.json"
    path.write_text(json.dumps(spec))
    sub = bench.child("_ingest_bare.py", "sub", str(path))
    await sub.start()
    await sub.expect("ready")
    load = bench.load(port, qos)
    await load.start()
    await load.expect("connected")
    sub.mark()
    await load.send("go")
    sent = await load.expect("sent")
    if mode == "drained":
        sub.mark()
        await sub.send("go")
    done = await sub.expect("done", timeout=600)
    sub.sample()
    t0 = float(done["t0"]) if mode == "drained" else float(sent["t0"])
    await load.send("close")
    await load.close()
    await sub.close()
    if amqtt is not None:
        await amqtt.close()
    publisher = sent["messages"] / max(1e-9, sent["t1"] - sent["t0"])
    return Run(
        broker,
        qos,
        mode,
        "bare",
        int(done["count"]),
        expected,
        float(done["last"]) - t0,
        sub.usage,
        publisher,
    )
