"""Alert latency bench children: the panic buttons' process and the background telemetry publishers."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import paho.mqtt.client as mqtt
from _ingest_load import connect_packet, publish_packet
from paho.mqtt.enums import CallbackAPIVersion

from drivers import DRIVERS

__all__ = ["load_paho", "load_raw", "press_buttons"]

_BODY = {"smoke": 0.01, "temperature": 21.0, "battery": 90, "rssi": -80}


def _client(serial: str, password: str, port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=serial, clean_session=True)
    client.username_pw_set(serial, password)
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    return client


def press_buttons(port: int, buttons: list[tuple[str, str]], conn: Connection) -> None:
    """Child process: the panic buttons' MQTT clients; publishes each press it is told, answers its time.

    The buttons live outside the hub's process, as real ones do: 200 paho network threads in it would
    compete for the hub's GIL. ``perf_counter`` is the system's monotonic clock, the same in both processes.
    """
    clients = {serial: _client(serial, password, port) for serial, password in buttons}
    conn.send("ready")
    while (order := conn.recv()) is not None:
        serial, payload = order
        t0 = time.perf_counter()
        clients[serial].publish(f"devices/{serial}/up", payload, qos=1)
        conn.send(t0)
    for client in clients.values():
        client.disconnect()
        client.loop_stop()


def _paced(devices: int, rate: float, stop: Any, sent: Any) -> Iterator[list[tuple[int, int]]]:
    """Every 2 ms until ``stop``, the (device index, sequence number) of the messages owed at ``rate`` msg/s."""
    time.sleep(1.0)
    seq, start, done = 1, time.perf_counter(), 0
    while not stop.is_set():
        owed = max(0, min(int((time.perf_counter() - start) * rate) - done, 2000))
        batch = []
        for _ in range(owed):
            index = done % devices
            batch.append((index, seq))
            done += 1
            if index == devices - 1:
                seq += 1
        yield batch
        sent.value = done
        time.sleep(0.002)


def _smoke(seq: int) -> bytes:
    return DRIVERS["smoke"].encode({"seq": seq, **_BODY}, "binary")


def load_paho(port: int, devices: list[tuple[str, str]], rate: float, stop: Any, sent: Any) -> None:
    """Child process: paho clients publish smoke telemetry (QoS 0, binary frames) at ``rate`` msg/s until ``stop``.

    paho costs ~30 µs a publish: at 10,000 msg/s these processes take two thirds of a core from a 2-core
    machine the hub shares with them; ``load_raw`` is the default for that reason.
    """
    clients = [(f"devices/{serial}/up", _client(serial, password, port)) for serial, password in devices]
    for batch in _paced(len(clients), rate, stop, sent):
        for index, seq in batch:
            topic, client = clients[index]
            client.publish(topic, _smoke(seq), qos=0)
    for _, client in clients:
        client.disconnect()
        client.loop_stop()


def _raw_connect(serial: str, password: str, port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(connect_packet(serial, serial, password))
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        raise SystemExit(f"{serial}: the broker refused the connection ({connack!r})")
    return sock


def load_raw(port: int, devices: list[tuple[str, str]], rate: float, stop: Any, sent: Any) -> None:
    """Child process: the same telemetry as ``load_paho``, as MQTT 3.1.1 PUBLISH frames on plain sockets.

    Each device's frames of a 2 ms slice go out in one write (~3 µs a message here): the load
    generator leaves the machine's CPU to the hub, its broker and its database.
    """
    socks = [(f"devices/{serial}/up", _raw_connect(serial, password, port)) for serial, password in devices]
    for batch in _paced(len(socks), rate, stop, sent):
        frames: list[list[bytes]] = [[] for _ in socks]
        for index, seq in batch:
            frames[index].append(publish_packet(socks[index][0], _smoke(seq), 0, 0))
        for (_topic, sock), out in zip(socks, frames, strict=True):
            if out:
                sock.sendall(b"".join(out))
    for _topic, sock in socks:
        sock.sendall(b"\xe0\x00")
        sock.close()
