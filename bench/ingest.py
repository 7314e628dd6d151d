"""Ingest benchmark: simulated devices → MQTT broker → the hub's full pipeline → InfluxDB, against a bare subscriber.

Run from the repository root: ``.venv/bin/python bench/ingest.py [--devices N] [--messages M]``.
Devices are enrolled for real into a SQLite registry; Mosquitto gets the exported password and ACL files.
The hub runs as ``build_hub`` makes it (auth, decode, validation, state, rule engine, InfluxDB store) in a
process of its own; its figure counts points in InfluxDB (``SELECT count``). The reference is a paho
subscriber that only counts, on the same broker in the same run: for Mosquitto the same instance; for the
embedded amqtt broker (where devices may not read each other's uplinks) an anonymous amqtt instance of
the same version and listener settings. Live: the clock runs from the publishers' start to the last message
(the publisher bounds it). Drained (Mosquitto only): M messages queued for a persistent session, the clock
from its reconnect to the last message. See docs/benchmarks.md.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ingest_fleet import enroll_fleet
from _ingest_runs import Bench, Run, run_bare, run_hub

from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer

__all__ = ["main", "parse_args"]

# Measured here with Node-RED doing MQTT → threshold → InfluxDB, drained 100 k (DESIGN.md §5).
NODE_RED = {0: 38_000.0, 1: 34_000.0}
GOAL_RATIO, GOAL_RSS_MB = 0.6, 150.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--devices", type=int, default=1000, help="simulated devices, each its own connection"
    )
    parser.add_argument("--messages", type=int, default=100_000, help="uplinks per run (split over devices)")
    parser.add_argument("--qos", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    parser.add_argument(
        "--brokers", nargs="+", default=["mosquitto", "amqtt"], choices=["mosquitto", "amqtt"]
    )
    parser.add_argument("--modes", nargs="+", default=["drained", "live"], choices=["drained", "live"])
    parser.add_argument(
        "--format", default="json", choices=["json", "cbor", "binary"], help="uplink payloads"
    )
    parser.add_argument("--flush-interval", type=float, default=0.1, help="the hub's InfluxDB batch age, s")
    parser.add_argument(
        "--stall", type=float, default=10.0, help="give up after this many s without progress"
    )
    parser.add_argument("--only", choices=["hub", "bare"], help="measure one side only")
    parser.add_argument("--profile", action="store_true", help="py-spy the hub's measured window (slows it)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs, settings) and say where"
    )
    return parser.parse_args(argv)


def _mb(n: int) -> float:
    return n / (1 << 20)


def summary(runs: list[Run]) -> None:
    """The final table: bare and hub side by side per broker, QoS and mode, and the goals."""
    print()
    print(
        f"{'broker':9} {'qos':>3} {'mode':7} {'bare msg/s':>10} {'hub msg/s':>10} {'ratio':>6} "
        f"{'hub CPU%':>8} {'hub RSS MB':>10} {'pub msg/s':>10} {'counted':>15}"
    )
    keys = sorted({(r.broker, r.qos, r.mode) for r in runs}, key=lambda k: (k[0] != "mosquitto", k[2], k[1]))
    for broker, qos, mode in keys:
        side = {r.who: r for r in runs if (r.broker, r.qos, r.mode) == (broker, qos, mode)}
        bare, hub = side.get("bare"), side.get("hub")
        ratio = f"{hub.rate / bare.rate:6.2f}" if hub and bare and bare.rate else f"{'-':>6}"
        line = f"{broker:9} {qos:>3} {mode:7} "
        line += f"{bare.rate:10,.0f} " if bare else f"{'-':>10} "
        line += (
            f"{hub.rate:10,.0f} {ratio} {hub.usage.cpu_pct:8.0f} {_mb(hub.usage.peak_rss):10.0f} "
            if hub
            else (f"{'-':>10} {ratio} {'-':>8} {'-':>10} ")
        )
        either = hub or bare
        pub = either.publisher if either else 0.0
        counted = f"{hub.count}/{hub.expected}" if hub else f"{bare.count}/{bare.expected}" if bare else ""
        print(line + f"{pub:10,.0f} {counted:>15}")
    print()
    print(
        f"goals: hub >= {GOAL_RATIO} x bare (drained), ahead of Node-RED ({NODE_RED[0]:,.0f} QoS 0 / "
        f"{NODE_RED[1]:,.0f} QoS 1 msg/s, drained), peak RSS < {GOAL_RSS_MB:.0f} MB"
    )
    for r in runs:
        if r.who == "hub" and r.mode == "drained":
            bare = next(
                (
                    b
                    for b in runs
                    if b.who == "bare" and (b.broker, b.qos, b.mode) == (r.broker, r.qos, r.mode)
                ),
                None,
            )
            verdicts = [
                f"ratio {'met' if bare and r.rate >= GOAL_RATIO * bare.rate else 'MISSED'}",
                f"Node-RED {'beaten' if r.rate > NODE_RED[r.qos] else 'NOT beaten'}",
                f"RSS {'met' if _mb(r.usage.peak_rss) < GOAL_RSS_MB else 'MISSED'}",
            ]
            print(f"  {r.broker} QoS {r.qos} drained: " + ", ".join(verdicts))
    lost = [r for r in runs if r.count != r.expected]
    for r in lost:
        print(f"  {r.who} {r.broker} QoS {r.qos} {r.mode}: counted {r.count} of {r.expected}")


async def main(args: argparse.Namespace) -> list[Run]:
    """Start InfluxDB and Mosquitto, enroll the fleet, run every combination asked for, print the table."""
    tmp = tempfile.mkdtemp(prefix="bench-ingest-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as auto:
        root = Path(tmp or auto)
        started = time.monotonic()
        # Other work on the machine moves every figure here: say how busy it was.
        print("load average at start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
        fleet = await enroll_fleet(root, args.devices)
        print(f"enrolled {len(fleet.devices)} devices in {time.monotonic() - started:.1f} s")
        mosq = MosquittoServer(
            root / "mosquitto",
            password_file=fleet.mosquitto_dir / "password_file",
            acl_file=fleet.mosquitto_dir / "acl_file",
        )
        # Drained at QoS 0 needs Mosquitto to queue QoS 0 messages for offline persistent sessions too.
        mosq.config_path.write_text(mosq.config_path.read_text() + "queue_qos0_messages true\n")
        with InfluxServer(root / "influxd") as influx, mosq:
            bench = Bench(args, root, influx, mosq, fleet)
            runs: list[Run] = []
            for broker in args.brokers:
                for mode in args.modes:
                    if broker == "amqtt" and mode == "drained":
                        continue  # the hub is the amqtt broker: nothing queues for it
                    for qos in args.qos:
                        for who, run in (("bare", run_bare), ("hub", run_hub)):
                            if args.only in (None, who):
                                result = await run(bench, broker, qos, mode)
                                runs.append(result)
                                print(
                                    f"{broker:9} QoS {qos} {mode:7} {who:4}: {result.rate:9,.0f} msg/s "
                                    f"({result.count}/{result.expected} in {result.seconds:.2f} s, "
                                    f"CPU {result.usage.cpu_pct:.0f}%, RSS {_mb(result.usage.peak_rss):.0f} MB)",
                                    flush=True,
                                )
        summary(runs)
        print("load average at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
        if tmp:
            print(f"logs and settings kept in {tmp}")
    return runs


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
