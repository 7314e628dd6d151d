"""Bench child: the hub as ``build_hub`` makes it, in a process of its own so its RSS and CPU are its own.

``_ingest_hub.py SETTINGS.json``: starts the hub (waiting for the external broker's subscription), emits
``started`` with the MQTT port, then obeys ``mqtt_stop`` / ``mqtt_start`` (the drained test: a reconnect of the
persistent session, timed from just before it), ``watch`` (tell when InfluxDB has acknowledged a number of
points) and ``stats``; stops on ``stop`` or end of input.
With ``HUB_BENCH_PROFILE=<file>`` the whole run is under cProfile and the stats go to that file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _ingest_proc import emit, read_commands

from hub.app import Hub, build_hub
from hub.config import Settings

__all__ = ["main"]


def _mqtt(hub: Hub) -> Any:
    return next(c for c in hub.lifecycle.components if c.name == "mqtt")


def _stats(hub: Hub) -> dict[str, Any]:
    store = hub.store.stats
    mqtt = _mqtt(hub)
    return {
        "written": store.written,
        "spooled": store.spooled,
        "dropped": store.dropped,
        "refused": hub.ingest.dead_letters.total,
        "received": getattr(mqtt, "received", None),
        "alerts": len(hub.evaluator.queue),
    }


async def _watch(hub: Hub, target: int, stall: float) -> None:
    """Emit ``reached`` when InfluxDB has acknowledged ``target`` points, or progress stopped for ``stall`` s.

    Polling the hub's own counter, not ``SELECT count`` (which costs InfluxDB ~50 ms of CPU at 100 k
    points and would steal it from the hub on a small machine); the parent counts in InfluxDB afterwards.
    """
    seen, seen_at = -1, time.monotonic()
    mqtt, received_at = _mqtt(hub), None
    while True:
        written = hub.store.stats.written
        now = time.monotonic()
        if received_at is None and (getattr(mqtt, "received", None) or 0) >= target:
            received_at = now  # when the last message was read: the rest is the store's tail
        if written != seen:
            seen, seen_at = written, now
        if written >= target or now - seen_at > stall:
            emit("reached", at=seen_at, written=written, received_at=received_at)
            return
        await asyncio.sleep(0.005)


async def _subscribed(hub: Hub) -> None:
    connected = getattr(_mqtt(hub), "connected", None)
    if isinstance(connected, asyncio.Event):
        await asyncio.wait_for(connected.wait(), 30)


async def main(settings: Settings) -> None:
    """Run the hub and answer the parent's commands."""
    hub = build_hub(settings)
    await hub.start()
    await _subscribed(hub)
    emit("started", port=getattr(_mqtt(hub), "port", None) or settings.mqtt.port)
    commands = await read_commands()
    watcher: asyncio.Task[None] | None = None
    try:
        while line := await commands.readline():
            cmd = json.loads(line)["cmd"]
            if cmd == "mqtt_stop":
                await _mqtt(hub).stop()
                emit("mqtt_stopped")
            elif cmd == "mqtt_start":
                t0 = time.monotonic()
                await _mqtt(hub).start()
                emit("mqtt_started", t0=t0)
            elif cmd == "watch":
                args = json.loads(line)
                watcher = asyncio.create_task(_watch(hub, int(args["target"]), float(args["stall"])))
            elif cmd == "stats":
                emit("stats", **_stats(hub))
            elif cmd == "stop":
                break
    finally:
        if watcher is not None:
            watcher.cancel()
        await hub.stop()
    emit("stopped", **_stats(hub))


def _settings(path: str) -> Settings:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return Settings(_env_file=None, **json.loads(Path(path).read_text()))  # type: ignore[call-arg]


if __name__ == "__main__":
    profile = os.environ.get("HUB_BENCH_PROFILE")
    if profile:
        import cProfile

        with cProfile.Profile() as prof:
            asyncio.run(main(_settings(sys.argv[1])))
        prof.dump_stats(profile)
    else:
        asyncio.run(main(_settings(sys.argv[1])))
