"""Failover under load: QoS 1 telemetry and panic presses while the active hub, then a broker node, is killed.

Two ``iothub serve`` processes (active and standby, HA on one PostgreSQL), a three-node NATS cluster (MQTT on
JetStream, R3), InfluxDB and Prism (Twilio). Devices are raw QoS 1 clients spread over the three nodes; each
keeps an uplink until the broker acknowledged it and sends it again after a reconnect, so "lost" is exact:
acknowledged by the broker, numbered, and not in InfluxDB at the end. A reference phase breaks nothing;
then one phase per fault (``--faults``, default ``hub,broker``; also ``postgres``, ``influxdb``, ``twilio``:
bench/_failover_faults.py), each ``--phase`` seconds with the fault ``--kill-after`` seconds in, and a
press every ``--press-every`` s from a button in a building of its own (a new urgent case each).

Printed: the times each fault measured (takeover: kill → the standby's first message), uplinks acknowledged
and lost (by the phase their PUBACK fell in), and alert latency (press → the case's first SMS answered by
Twilio) p50/p99/max per phase, with each phase's p99 over the reference's.

    python bench/failover.py [--rate 5000] [--devices 200] [--phase 20] [--lease 5] [--faults hub,broker]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _failover_faults import FAULTS, Faulty, active, until
from sqlalchemy import select

from drivers import DRIVERS
from hub.config import DatabaseSettings
from hub.db import Database
from hub.db.cases import CaseAlert, EscalationStep
from hub.db.outbox import OutboxMessage
from tests.ha.fleet import Fleet, QosDevice
from tests.ha.pair import HaSite, HubNode, Site, build_site, stored_seqs
from tests.servers.influxdb import InfluxServer
from tests.servers.nats import NatsCluster
from tests.servers.postgres import PostgresDatabase
from tests.servers.prism import PrismServer

__all__ = ["main"]

BASE = int(time.time()) - 80_000


def smoke(_serial: str, seq: int) -> bytes:
    """A smoke sensor's uplink numbered ``seq`` (stamped BASE + seq, so InfluxDB's timestamps name it)."""
    body = {"seq": seq, "ts": BASE + seq, "smoke": 0.01, "temperature": 21.0, "battery": 90, "rssi": -80}
    return DRIVERS["smoke"].encode(body, "binary")


def press(_serial: str, seq: int) -> bytes:
    """A long press of a panic button."""
    return DRIVERS["panic_button"].encode({"seq": seq, "events": ["pressed_long"]})


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Run:
    """The devices and what each phase measured."""

    def __init__(self, args: argparse.Namespace, faulty: Faulty, site: Site) -> None:
        self.args, self.faulty = args, faulty
        servers = faulty.cluster.servers
        self.fleet = Fleet([QosDevice(f"HS-{n:03d}", servers, first=n) for n in range(args.devices)], smoke)
        self.buttons = Fleet([QosDevice(s, servers, first=n) for n, s in enumerate(site.buttons)], press)
        self.pressed: dict[str, float] = {}  # button -> press time (wall clock)
        self.phases: dict[str, list[str]] = {}  # phase -> buttons pressed
        self.figures: dict[str, dict[str, float]] = {}
        self.windows: dict[str, tuple[float, float]] = {}  # phase -> (start, end), perf_counter

    async def phase(self, name: str) -> None:
        """One phase: presses every ``press_every`` s; the fault ``kill_after`` s in."""
        args, pressed = self.args, self.phases.setdefault(name, [])
        start = time.perf_counter()
        fault = FAULTS.get(name)
        breaking = asyncio.create_task(self._break(name)) if fault else None
        free = [d for d in self.buttons.devices if d.serial not in self.pressed]
        while time.perf_counter() - start < args.phase and free:
            device = free.pop(0)
            self.pressed[device.serial] = time.time()
            await device.publish(1, press(device.serial, 1))
            pressed.append(device.serial)
            await asyncio.sleep(args.press_every)
        if breaking is not None:
            await breaking
        self.windows[name] = (start, time.perf_counter())

    async def _break(self, name: str) -> None:
        await asyncio.sleep(self.args.kill_after)
        self.figures[name] = await FAULTS[name](self.faulty)


async def _latencies(db: Database, buttons: list[str], pressed: dict[str, float]) -> list[float]:
    """Per press, milliseconds from the press to its case's first SMS answered by Twilio (Prism)."""
    out = []
    async with db.session() as session:
        for serial in buttons:
            case_ids = select(CaseAlert.case_id).where(CaseAlert.labels["device"].as_string() == serial)
            first = select(EscalationStep.id).where(
                EscalationStep.case_id.in_(case_ids), EscalationStep.seq == 0
            )
            sent = await session.scalar(select(OutboxMessage.sent_at).where(OutboxMessage.step_id.in_(first)))
            if sent is not None:
                out.append((sent.timestamp() - pressed[serial]) * 1000)
    return out


async def _account(run_: Run, influx: InfluxServer) -> dict[str, int]:
    """Acknowledged uplinks missing from InfluxDB, by the phase their PUBACK fell in (polled until stable)."""
    previous, missing, total = -1, {}, 0
    for _ in range(60):
        stored = stored_seqs(influx.url, "failover", BASE)
        missing = {d.serial: set(d.acked) - stored.get(d.serial, set()) for d in run_.fleet.devices}
        total = sum(len(m) for m in missing.values())
        if total == previous:
            break
        previous = total
        await asyncio.sleep(2)
    out = {"acknowledged": sum(len(d.acked) for d in run_.fleet.devices), "lost": total}
    for name, (start, end) in run_.windows.items():
        out[name] = sum(
            1 for d in run_.fleet.devices for seq in missing[d.serial] if start <= d.acked[seq] < end
        )
    return out


async def run(args: argparse.Namespace) -> None:
    """Start everything, run the phases, account, print."""
    root = Path(tempfile.mkdtemp(prefix="failover-"))
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise SystemExit(f"unknown fault(s) {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}")
    buttons = (len(faults) + 1) * int(args.phase / args.press_every + 1)
    with (
        PostgresDatabase("iothub_failover") as pg,
        NatsCluster(root / "nats", ack_wait=args.ack_wait) as cluster,
        InfluxServer(root / "influxdb") as influx,
        PrismServer(root / "prism") as prism,
    ):
        db = Database(DatabaseSettings(url=pg.asyncpg_url))
        await db.start()
        site = await build_site(db, buttons=buttons, smoke=args.devices, silent=0, silent_after=60)
        influx.create_database("failover")
        ha = HaSite(
            pg.asyncpg_url, cluster.servers_setting, influx.url, "failover", prism.url, args.lease, args.renew
        )
        nodes = [HubNode(name, ha, root / name) for name in ("a", "b")]
        run_ = Run(args, Faulty(nodes, cluster, influx, prism, pg.asyncpg_url, args.outage), site)
        try:
            for node in nodes:
                node.start()
            if await until(lambda: active(nodes) is not None, 120) is None:
                raise SystemExit("no hub became active:\n" + nodes[0].log_tail())
            await run_.fleet.start()
            await run_.buttons.start()
            load = asyncio.create_task(run_.fleet.send(args.rate, 1e9))
            await asyncio.sleep(3)  # at rate
            first = active(nodes)
            before, t0 = first.ingested() if first else 0.0, time.perf_counter()
            await run_.phase("reference")
            rate = ((first.ingested() if first else 0.0) - before) / (time.perf_counter() - t0)
            for fault in faults:
                await run_.phase(fault)
            load.cancel()
            settled = await run_.fleet.settle(120) and await run_.buttons.settle(60)
            await asyncio.sleep(float(args.ack_wait.rstrip("s")) + 5)  # redeliveries after ack_wait
            lost = await _account(run_, influx)
            latencies = {name: await _latencies(db, b, run_.pressed) for name, b in run_.phases.items()}
        finally:
            await run_.fleet.close()
            await run_.buttons.close()
            for node in nodes:
                node.stop()
            await db.stop()
    _print(args, run_, rate, settled, lost, latencies)


def _print(
    args: argparse.Namespace,
    run_: Run,
    rate: float,
    settled: bool,
    lost: dict[str, int],
    latencies: dict[str, list[float]],
) -> None:
    load = os.getloadavg()
    print(
        f"failover, {args.devices} QoS 1 devices at {args.rate:,.0f} msg/s (the hub accepted {rate:,.0f} msg/s in "
        f"the reference phase), lease {args.lease:g} s, NATS ack_wait {args.ack_wait}; "
        f"load average {load[0]:.2f} {load[1]:.2f}"
    )
    for name, figures in run_.figures.items():
        print(f"{name}: " + "; ".join(f"{what} {seconds:.2f} s" for what, seconds in figures.items()))
    print(f"device reconnects (broker nodes gone): {run_.fleet.reconnects}")
    print(
        f"uplinks acknowledged by the broker {lost['acknowledged']:,}, lost {lost['lost']:,} (goal 0): "
        + ", ".join(f"{name} {lost.get(name, 0)}" for name in run_.windows)
        + ("" if settled else "; some uplinks were never acknowledged (devices gave up waiting)")
    )
    if args.verbose:
        for name, buttons in run_.phases.items():
            start = min(run_.pressed[b] for b in buttons)
            print(name, "pressed at", " ".join(f"{run_.pressed[b] - start:.1f}" for b in buttons))
            print(name, "ms", " ".join(f"{v:.0f}" for v in latencies[name]))
    reference = _pct(latencies["reference"], 99) if latencies.get("reference") else float("nan")
    print("alert latency, press -> first SMS answered by Twilio (ms)")
    print(f"{'phase':<10} {'presses':>7} {'SMS':>5} {'p50':>8} {'p99':>9} {'max':>9} {'p99/ref':>8}")
    for name, values in latencies.items():
        presses = len(run_.phases[name])
        if not values:
            print(f"{name:<10} {presses:7d} {0:5d}  none measured")
            continue
        p99 = _pct(values, 99)
        print(
            f"{name:<10} {presses:7d} {len(values):5d} {_pct(values, 50):8.0f} {p99:9.0f} {max(values):9.0f} "
            f"{p99 / reference:8.1f}"
        )


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rate", type=float, default=5_000.0, help="telemetry uplinks per second, all devices"
    )
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--phase", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--press-every", type=float, default=0.5)
    parser.add_argument("--kill-after", type=float, default=5.0)
    parser.add_argument("--faults", default="hub,broker", help=f"comma-separated, of {', '.join(FAULTS)}")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds InfluxDB or Twilio stay down")
    parser.add_argument("--lease", type=float, default=5.0, help="HUB_HA_LEASE")
    parser.add_argument("--renew", type=float, default=1.0, help="HUB_HA_RENEW")
    parser.add_argument(
        "--ack-wait", default="5s", help="NATS mqtt ack_wait (redelivery to a dead connection)"
    )
    parser.add_argument("--verbose", action="store_true", help="every press: when, and its latency")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
