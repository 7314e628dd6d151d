"""Bench children for the reference: a bare paho subscriber that only counts, and an anonymous amqtt broker.

``_ingest_bare.py sub SPEC.json``: subscribe (persistent session when ``drained``), emit ``ready``; live, count
until ``target``; drained, disconnect, wait for ``go``, reconnect and count. Emits ``done`` with the time of
the last message. ``_ingest_bare.py broker``: amqtt with the hub's listener settings, anonymous, emits
``started`` with its port and runs until end of input.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _ingest_proc import emit, read_commands

__all__ = ["run_broker", "run_subscriber"]


def _wait_for(cmd: str) -> None:
    for line in sys.stdin:
        if json.loads(line)["cmd"] == cmd:
            return
    raise SystemExit(0)


def run_subscriber(spec: dict[str, Any]) -> None:
    """Count messages on ``spec["topic"]`` until ``target`` arrive or none came for ``stall`` seconds."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    drained = bool(spec["drained"])
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=spec["client_id"], clean_session=not drained)
    if spec.get("username"):
        client.username_pw_set(spec["username"], spec.get("password"))
    state: dict[str, float] = {"count": 0, "last": 0.0, "subscribed": 0}

    def on_message(_c: Any, _u: Any, _m: Any) -> None:
        state["count"] += 1
        state["last"] = time.monotonic()

    def on_subscribe(*_args: Any) -> None:
        state["subscribed"] = 1

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.connect(spec["host"], int(spec["port"]), keepalive=600)
    client.subscribe(spec["topic"], qos=int(spec["qos"]))
    deadline = time.monotonic() + 30
    while not state["subscribed"] and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    t0 = 0.0
    if drained:
        client.disconnect()
        emit("ready")
        _wait_for("go")
        t0 = time.monotonic()
        client.connect(spec["host"], int(spec["port"]), keepalive=600)
    else:
        emit("ready")
    target, stall = int(spec["target"]), float(spec["stall"])
    quiet_since = time.monotonic()
    seen = 0.0
    while state["count"] < target:
        client.loop(timeout=0.05)
        now = time.monotonic()
        if state["count"] != seen:
            seen, quiet_since = state["count"], now
        elif now - quiet_since > stall:
            break
    emit("done", t0=t0, last=state["last"], count=int(state["count"]))
    client.disconnect()
    if drained:
        # Leave no persistent session behind to queue the next run's messages.
        client.reinitialise(client_id=spec["client_id"], clean_session=True)
        if spec.get("username"):
            client.username_pw_set(spec["username"], spec.get("password"))
        client.connect(spec["host"], int(spec["port"]))
        client.disconnect()


async def run_broker() -> None:
    """An anonymous amqtt broker configured as the hub's embedded one, until end of input."""
    from hub.config import MqttSettings
    from hub.ingest.broker import EmbeddedBroker

    broker = EmbeddedBroker(MqttSettings(port=0))
    await broker.start()
    emit("started", port=broker.port)
    commands = await read_commands()
    while await commands.readline():
        pass
    await broker.stop()


if __name__ == "__main__":
    if sys.argv[1] == "broker":
        asyncio.run(run_broker())
    else:
        run_subscriber(json.loads(Path(sys.argv[2]).read_text()))
