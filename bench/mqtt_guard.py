"""What the embedded broker's connection guard costs per message, against amqtt reading the same stream alone.

Run from the repository root: ``.venv/bin/python bench/mqtt_guard.py [--messages N] [--rounds R]``.
One amqtt broker in this process takes QoS 0 PUBLISHes from a raw-socket publisher (a process of its own,
which sends them in large writes, then a PINGREQ, and waits for the PINGRESP). The broker counts each
message where the hub's ``HubBroker`` would hand it to the pipeline and does nothing else, so the figure is
amqtt's read path: with the guard (``GuardedBroker`` with a ``ConnectionGuard``, hub/ingest/mqtt_guard.py)
and without it (the reference), alternately, in the same run. It prints the broker's CPU per message
and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.config import MqttSettings
from hub.ingest import mqtt_wire as wire
from hub.ingest.mqtt_guard import ConnectionGuard, GuardedBroker
from hub.metrics import HubMetrics
from tests.servers._process import free_port

__all__ = ["main"]

PUBLISHER = """
import socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
connect, publish = bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(connect)
assert sock.recv(4)[:1] == b"\\x20"
chunk = publish * 1000
started = time.perf_counter()
for _ in range(count // 1000):
    sock.sendall(chunk)
sock.sendall(b"\\xc0\\x00")
seen = b""
while b"\\xd0\\x00" not in seen:
    seen = seen[-1:] + sock.recv(65536)
print(time.perf_counter() - started)
sock.sendall(b"\\xe0\\x00")
"""


class CountingBroker(GuardedBroker):
    """Counts PUBLISHes where HubBroker hands them to the pipeline; nothing is broadcast."""

    received = 0
    expected = 0
    done: asyncio.Event

    async def _handle_message_delivery(self, client_session: Any, handler: Any, wait_deliver: Any) -> bool:
        if wait_deliver.result() is not None:
            self.received += 1
            if self.received == self.expected:
                self.done.set()
        return True


async def one_round(guarded: bool, count: int) -> tuple[float, float]:
    """(messages a second, broker CPU µs per message) for ``count`` messages."""
    port = free_port()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": -1}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = CountingBroker(config)
    broker.expected, broker.done = count, asyncio.Event()
    if guarded:
        broker.guard = ConnectionGuard(MqttSettings(), HubMetrics())
    await broker.start()
    try:
        connect = wire.connect_packet("bench", username=None, password=None, clean_session=True, keepalive=60)
        publish = wire.publish_packet("devices/BENCH-1/up", b'{"seq":1,"smoke":0.01,"temperature":21.5}', 0)
        cpu = time.process_time()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PUBLISHER,
            str(port),
            str(count),
            connect.hex(),
            publish.hex(),
            stdout=subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        cpu = time.process_time() - cpu
        await asyncio.wait_for(broker.done.wait(), 60)  # PINGRESP can pass the last deliveries' tasks
        return count / float(out), cpu / count * 1e6
    finally:
        await broker.shutdown()


async def main(args: argparse.Namespace) -> None:
    """Alternate guarded and plain rounds; print medians and the ratio."""
    print("load average at start: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    figures: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _round in range(args.rounds):
        for guarded in (False, True):
            figures[guarded].append(await one_round(guarded, args.messages))
    for guarded, label in ((False, "amqtt alone (reference)"), (True, "amqtt + connection guard")):
        rate = statistics.median(r for r, _ in figures[guarded])
        cpu = statistics.median(c for _, c in figures[guarded])
        print(f"{label:26}: {rate:>9,.0f} msg/s, broker CPU {cpu:6.1f} µs/msg (median of {args.rounds})")
    ratio = statistics.median(c for _, c in figures[True]) / statistics.median(c for _, c in figures[False])
    print(f"CPU per message, guarded / reference: {ratio:.2f}")
    print("load average at end: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--messages", type=int, default=50_000, help="PUBLISHes per round (a multiple of 1000)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
