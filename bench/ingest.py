"""Ingest benchmark: simulated devices → MQTT broker → the hub's full pipeline → InfluxDB, against a bare subscriber.

Run from the repository root: ``.venv/bin/python bench/ingest.py [--devices N] [--messages M]``.
Devices are enrolled for real into a SQLite registry; Mosquitto gets the exported password and ACL files.
The hub runs as ``build_hub`` makes it (auth, decode, validation, state, rule engine, InfluxDB store) in a
process of its own; its figure counts points in InfluxDB (``SELECT count``). The reference is a paho
subscriber that only counts, on the same broker in the same run: for Mosquitto the same instance; for the
embedded amqtt broker (where devices may not read each other's uplinks) an anonymous amqtt instance of
the same version and listener settings. Live: the clock runs from the publishers' start to the last message
(the publisher bounds it). Drained (Mosquitto only): M messages queued for a persistent session, the clock
from its reconnect to the last message. The peer, on Mosquitto, is Node-RED doing MQTT → threshold →
InfluxDB in its own process (bench/_ingest_nodered.py; installed by ``npm ci`` on first use), drained the
same way, counted the same way; ``--peers`` alone leaves it out. See docs/benchmarks.md.
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
from _ingest_nodered import NodeRedUnavailable, ensure_installed, run_nodered
from _ingest_runs import Bench, Run, run_bare, run_hub
from _ingest_summary import mb, summary

from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer

__all__ = ["main", "parse_args"]


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
    parser.add_argument("--only", choices=["hub", "bare", "nodered"], help="measure one side only")
    parser.add_argument(
        "--peers",
        nargs="*",
        choices=["nodered"],
        help="peers measured beside the hub on Mosquitto (default: Node-RED where npm is available; "
        "--peers alone: none)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the hub's measured window (slows it)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs, settings) and say where"
    )
    return parser.parse_args(argv)


def _nodered(args: argparse.Namespace) -> bool:
    """Whether Node-RED runs as the peer: asked for, or by default where npm (or an install) is there."""
    explicit = args.only == "nodered" or bool(args.peers)
    wanted = args.only in (None, "nodered") and (args.peers is None or "nodered" in args.peers)
    if not wanted or "mosquitto" not in args.brokers:
        return False
    try:
        ensure_installed()
    except NodeRedUnavailable as exc:
        if explicit:
            raise SystemExit(f"Node-RED: {exc}") from exc
        print(f"Node-RED peer skipped: {exc}")
        return False
    return True


async def main(args: argparse.Namespace) -> list[Run]:
    """Start InfluxDB and Mosquitto, enroll the fleet, run every combination asked for, print the table."""
    tmp = tempfile.mkdtemp(prefix="bench-ingest-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as auto:
        root = Path(tmp or auto)
        started = time.monotonic()
        nodered = _nodered(args)
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
                        sides = [("bare", run_bare), ("hub", run_hub)]
                        if nodered and broker == "mosquitto":
                            sides.append(("nodered", run_nodered))
                        for who, run in sides:
                            if args.only in (None, who):
                                result = await run(bench, broker, qos, mode)
                                runs.append(result)
                                print(
                                    f"{broker:9} QoS {qos} {mode:7} {who:7}: {result.rate:9,.0f} msg/s "
                                    f"({result.count}/{result.expected} in {result.seconds:.2f} s, "
                                    f"CPU {result.usage.cpu_pct:.0f}%, RSS {mb(result.usage.peak_rss):.0f} MB)",
                                    flush=True,
                                )
        summary(runs)
        print("load average at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
        if tmp:
            print(f"logs and settings kept in {tmp}")
    return runs


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
