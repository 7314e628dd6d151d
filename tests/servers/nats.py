"""NATS with its MQTT listener: one node or a three-node JetStream cluster on free loopback ports.

Each node is its own ``nats-server`` process with its own store directory, a ``cluster { routes }``
block naming the other nodes, and an ``mqtt { port }`` listener (MQTT 3.1.1, sessions and QoS 1
messages in JetStream streams, replicated over the cluster). A node can be killed (SIGKILL) and
started again on the same ports and store, which is what the broker failover tests do.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from hub.errors import StartupError

from ._process import LocalServer, ManagedProcess, free_port, wait_until

__all__ = ["NatsCluster", "NatsNode"]

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
# MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "probe".
_CONNECT = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 5]) + b"probe"
_DISCONNECT = bytes([0xE0, 0])
# How long a QoS 1 message delivered to a client and not acknowledged waits before it is sent again.
# The server's default is 30 s; a client that comes back sooner gets its unacknowledged messages then.
ACK_WAIT = "30s"


def _node_config(node: NatsNode, routes: Sequence[int], replicas: int, ack_wait: str) -> str:
    route_lines = "\n".join(f"    nats-route://127.0.0.1:{port}" for port in routes)
    cluster = (
        f"""
cluster {{
  name: iothub
  host: 127.0.0.1
  port: {node.cluster_port}
  routes: [
{route_lines}
  ]
}}
"""
        if routes
        else ""
    )
    return f"""\
server_name: {node.name}
host: 127.0.0.1
port: {node.client_port}
http: 127.0.0.1:{node.monitor_port}
jetstream {{
  store_dir: "{node.root / "store"}"
  max_memory_store: 256MB
  max_file_store: 2GB
}}
{cluster}
mqtt {{
  host: 127.0.0.1
  port: {node.port}
  # Sessions and QoS 1 messages are JetStream streams and consumers: replicated on every node,
  # so a session outlives the node its client was connected to.
  stream_replicas: {replicas}
  consumer_replicas: {replicas}
  ack_wait: "{ack_wait}"
  max_ack_pending: 1024
}}
"""


def _distinct_port(taken: set[int]) -> int:
    """A free port not handed out before in ``taken`` (the kernel may offer one twice in a row)."""
    while (port := free_port()) in taken:
        pass
    taken.add(port)
    return port


class NatsNode(LocalServer):
    """One ``nats-server`` process; ``kill()`` is SIGKILL, ``start()`` brings it back on the same ports."""

    ready_timeout = 30.0

    def __init__(self, root: Path, name: str, taken: set[int] | None = None) -> None:
        self.root = root
        self.name = name
        taken = set() if taken is None else taken
        self.port, self.client_port, self.cluster_port, self.monitor_port = (
            _distinct_port(taken) for _ in range(4)
        )
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "nats.conf"
        self._process = ManagedProcess(
            name, [NATS_SERVER, "-c", str(self.config_path)], cwd=root, log_path=root / "nats.log"
        )

    @property
    def host(self) -> str:
        """Return the address the MQTT listener binds."""
        return "127.0.0.1"

    def configure(self, routes: Sequence[int], replicas: int, ack_wait: str = ACK_WAIT) -> None:
        """Write the node's configuration (the other nodes' cluster ports as routes)."""
        self.config_path.write_text(_node_config(self, routes, replicas, ack_wait))

    def _check(self) -> None:
        if not Path(NATS_SERVER).exists():
            raise StartupError(f"{NATS_SERVER} is missing: apt-get install -y nats-server")

    def _ready(self) -> bool:
        return self.mqtt_answers()

    def mqtt_answers(self) -> bool:
        """Whether the MQTT listener answers a CONNECT with a CONNACK."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.settimeout(5)
                sock.sendall(_CONNECT)
                answer = sock.recv(4)
                if answer[:1] == b"\x20" and answer[3:4] == b"\x00":
                    sock.sendall(_DISCONNECT)
                    return True
                return False
        except OSError:
            return False

    def jetstream_ready(self) -> bool:
        """Whether the node's JetStream is up and, in a cluster, knows a meta leader."""
        try:
            info = httpx.get(f"http://127.0.0.1:{self.monitor_port}/jsz", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        meta = info.get("meta_cluster")
        return "config" in info and not info.get("disabled") and (meta is None or bool(meta.get("leader")))

    def kill(self) -> None:
        """SIGKILL the node, as a crash: no goodbye to its peers or clients."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        self._process.stop()


class NatsCluster:
    """Three (or ``size``) NATS nodes routed to each other, each with an MQTT listener."""

    def __init__(self, root: Path, size: int = 3, *, ack_wait: str = ACK_WAIT) -> None:
        self.root = root
        taken: set[int] = set()
        self.nodes = [NatsNode(root / f"n{i + 1}", f"n{i + 1}", taken) for i in range(size)]
        replicas = min(size, 3)
        for node in self.nodes:
            routes = [other.cluster_port for other in self.nodes if other is not node]
            node.configure(routes, replicas, ack_wait)

    @property
    def servers(self) -> list[tuple[str, int]]:
        """Every node's MQTT (host, port), in node order."""
        return [(node.host, node.port) for node in self.nodes]

    @property
    def servers_setting(self) -> str:
        """The nodes as ``HUB_MQTT_SERVERS`` takes them: ``host:port,host:port,…``."""
        return ",".join(f"{host}:{port}" for host, port in self.servers)

    def node_on(self, port: int) -> NatsNode:
        """The node whose MQTT listener is ``port``."""
        return next(node for node in self.nodes if node.port == port)

    def start(self) -> None:
        """Start every node, then wait (bounded) until JetStream has a leader and MQTT answers everywhere."""
        for node in self.nodes:
            node._check()
            node._process.start()
        for node in self.nodes:
            node._process.wait_ready(node.jetstream_ready, timeout=node.ready_timeout)
        for node in self.nodes:
            wait_until(node.mqtt_answers, timeout=node.ready_timeout, what=f"nats {node.name} mqtt")

    def close(self) -> None:
        """Stop every node and delete their stores."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> Self:
        try:
            self.start()
        except StartupError:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
