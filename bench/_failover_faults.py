"""Failover bench faults: what each phase breaks, and the times it measures (bench/failover.py).

Each fault is a coroutine ``fault(site) -> {figure: seconds}`` run ``--kill-after`` seconds into its phase:

- ``hub``: SIGKILL of the active hub; the standby's first message after it. The killed hub is started
  again (as its supervisor would), as the standby.
- ``broker``: SIGKILL of the NATS node the active hub reads from; subscribed elsewhere, first message.
- ``postgres``: every session of the hub's database ended at once, as a PostgreSQL restart does; the
  active loses its lease and exits, and is started again; the first message on whichever hub is active.
- ``influxdb``: InfluxDB frozen (SIGSTOP) for ``--outage`` seconds; the hub spools and replays.
- ``twilio``: Twilio (Prism) down for ``--outage`` seconds; SMS wait in the outbox and retry.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from hub.ha.lease import asyncpg_dsn
from tests.ha.pair import HubNode
from tests.servers.influxdb import InfluxServer
from tests.servers.nats import NatsCluster
from tests.servers.prism import PrismServer

__all__ = ["FAULTS", "Faulty", "active", "until"]

_SUBSCRIBED = re.compile(r"subscribed at (\S+):(\d+),")
NAN = float("nan")


@dataclass
class Faulty:
    """What the faults act on."""

    nodes: list[HubNode]
    cluster: NatsCluster
    influx: InfluxServer
    prism: PrismServer
    database_url: str
    outage: float


async def until(check: Callable[[], object], timeout: float) -> float | None:
    """Poll ``check`` every 20 ms; the wall time it became true, or None on timeout."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.02)
    return time.time()


def active(nodes: list[HubNode]) -> HubNode | None:
    """The node that says it is active."""
    return next((n for n in nodes if n.role() == "active"), None)


def _broker_of(node: HubNode) -> int | None:
    status = node.status() or {}
    detail = str(status.get("components", {}).get("mqtt", {}).get("detail", ""))
    found = _SUBSCRIBED.search(detail)
    return int(found.group(2)) if found else None


def _since(t0: float, t1: float | None) -> float:
    return NAN if t1 is None else t1 - t0


async def hub(site: Faulty) -> dict[str, float]:
    """Kill the active hub; time to the standby's first message."""
    old = active(site.nodes)
    assert old is not None, "no active hub to kill"
    standby = next(n for n in site.nodes if n is not old)
    killed = time.time()
    old.kill()
    first = await until(lambda: standby.ingested() > 0, 120)
    old.start()
    return {"takeover (kill -> first message on the standby)": _since(killed, first)}


async def broker(site: Faulty) -> dict[str, float]:
    """Kill the broker node under the active hub; time to subscribe elsewhere and to its next message."""
    node = active(site.nodes)
    assert node is not None, "no active hub"
    port = _broker_of(node)
    assert port is not None, "the active hub reports no broker"
    before, killed = node.ingested(), time.time()
    site.cluster.node_on(port).kill()
    again = await until(lambda: (_broker_of(node) or port) != port, 120)
    resumed = await until(lambda: node.ingested() > before, 120)
    return {
        "hub subscribed on another node": _since(killed, again),
        "hub's next message": _since(killed, resumed),
    }


async def postgres(site: Faulty) -> dict[str, float]:
    """End every session of the hub's database; time until a hub is active and consuming again."""
    before = {n.name: n.ingested() for n in site.nodes}
    conn = await asyncpg.connect(asyncpg_dsn(site.database_url).rsplit("/", 1)[0] + "/postgres")
    try:
        name = site.database_url.rsplit("/", 1)[1]
        cut = time.time()
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
    exited = await until(lambda: any(n.exited() is not None for n in site.nodes), 30)
    restarted = set()
    for node in site.nodes:
        if node.exited() is not None:
            restarted.add(node.name)
            node.start()  # as the supervisor would

    def consuming() -> bool:
        node = active(site.nodes)
        return node is not None and node.ingested() > (0.0 if node.name in restarted else before[node.name])

    resumed = await until(consuming, 120)
    return {"the active hub exited": _since(cut, exited), "a hub consuming again": _since(cut, resumed)}


async def influxdb(site: Faulty) -> dict[str, float]:
    """Freeze InfluxDB for the outage; the hub spools meanwhile."""
    pid = site.influx.pid
    assert pid is not None
    signal_pid(pid, signal.SIGSTOP)
    await asyncio.sleep(site.outage)
    signal_pid(pid, signal.SIGCONT)
    return {"InfluxDB frozen": site.outage}


async def twilio(site: Faulty) -> dict[str, float]:
    """Stop Twilio (Prism) for the outage; messages wait in the outbox."""
    site.prism.stop()
    await asyncio.sleep(site.outage)
    started = time.time()
    await asyncio.to_thread(site.prism.start)
    return {"Twilio down": site.outage + time.time() - started}


def signal_pid(pid: int, sig: signal.Signals) -> None:
    """Send a signal to a server we started."""
    os.kill(pid, sig)


FAULTS: dict[str, Callable[[Faulty], Awaitable[dict[str, Any]]]] = {
    "hub": hub,
    "broker": broker,
    "postgres": postgres,
    "influxdb": influxdb,
    "twilio": twilio,
}
