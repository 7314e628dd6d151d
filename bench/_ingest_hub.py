"""Bench child: the hub as ``build_hub`` makes it, in a process of its own so its RSS and CPU are its own.

``_ingest_hub.py SETTINGS.json``: starts the hub (waiting for the external broker's subscription), emits
``started`` with the MQTT port, then obeys ``mqtt_stop`` / ``mqtt_start`` (the drained test: a reconnect of the
persistent session, timed from just before it) and ``stats``; stops on ``stop`` or end of input.
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
            elif cmd == "stats":
                emit("stats", **_stats(hub))
            elif cmd == "stop":
                break
    finally:
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
