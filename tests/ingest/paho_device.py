"""A device as a process of its own (paho), so a test can freeze it with SIGSTOP: ``python -m tests.ingest.paho_device``.

It connects with its serial, the password from ``DEVICE_PASSWORD`` and a retained last will ``offline``,
publishes a retained ``online``, prints ``online`` once the broker acknowledged it, then idles; paho's
network thread sends PINGREQ at the keep-alive.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

import paho.mqtt.client as mqtt

__all__ = ["main"]


def main() -> int:
    """Run until killed; exit 1 if the broker refuses the CONNECT."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--serial", required=True)
    parser.add_argument("--keepalive", type=int, default=60)
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="3.1.1")
    args = parser.parse_args()
    protocol = mqtt.MQTTv5 if args.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.serial, protocol=protocol)
    client.username_pw_set(args.serial, os.environ["DEVICE_PASSWORD"])
    status = f"devices/{args.serial}/status"
    client.will_set(status, b"offline", qos=1, retain=True)
    answered = threading.Event()
    outcome: list[str] = []

    def on_connect(_c: object, _u: object, _flags: object, reason: mqtt.ReasonCode, _p: object) -> None:
        outcome.append("refused" if reason.is_failure else "accepted")
        answered.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", args.port, keepalive=args.keepalive)
    client.loop_start()
    if not answered.wait(10) or outcome != ["accepted"]:
        print(f"connect: {outcome or 'no CONNACK'}", flush=True)
        return 1
    client.publish(status, b"online", qos=1, retain=True).wait_for_publish(10)
    print("online", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
