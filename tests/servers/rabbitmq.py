"""A private RabbitMQ node with its MQTT plug-in, from the installed RabbitMQ 3.10, on free loopback ports.

Nothing of the machine's own node (rabbit@localhost on 5672) is shared: the node has its own name, data,
log and enabled-plug-ins files, an Erlang cookie of its own (``HOME`` is the node's directory) and its own
epmd on a free port, killed at close. The environment file of /etc/rabbitmq is not read. Start-up takes
seconds (10-30 on a busy machine): start it once per test session.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from pathlib import Path

from hub.errors import StartupError

from ._process import LocalServer, ManagedProcess, free_port

__all__ = ["RabbitMqServer"]

SBIN = Path("/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8/sbin")
EPMD = "/usr/bin/epmd"
# MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "probe" (anonymous: allowed here).
_CONNECT = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 5]) + b"probe"
_DISCONNECT = bytes([0xE0, 0])


class RabbitMqServer(LocalServer):
    """One RabbitMQ node (``rabbitmq_mqtt`` enabled, anonymous MQTT as guest) in ``root``."""

    name = "rabbitmq"
    ready_timeout = 120.0

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()  # MQTT
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"iothub-test-{secrets.token_hex(4)}@localhost"
        (root / "rabbitmq-env.conf").write_text("")
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
            "log.console = true\n"
            "log.console.level = warning\n"
            "log.file = false\n"
        )
        cookie = root / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)
        self.env = {
            "HOME": str(root),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
            "RABBITMQ_CONFIG_FILES": str(root / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(root / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(root / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
        }
        argv = ["env", *(f"{key}={value}" for key, value in self.env.items()), str(SBIN / "rabbitmq-server")]
        self._process = ManagedProcess("rabbitmq", argv, cwd=root, log_path=root / "rabbitmq.log")

    @property
    def host(self) -> str:
        """Return the address the MQTT listener binds."""
        return "127.0.0.1"

    def _check(self) -> None:
        """Enable the MQTT plug-in in the node's own enabled-plug-ins file (offline: the node is not up yet)."""
        if not (SBIN / "rabbitmq-server").exists():
            raise StartupError(f"{SBIN} is missing: apt-get install -y rabbitmq-server")
        try:
            subprocess.run(
                [str(SBIN / "rabbitmq-plugins"), "--offline", "enable", "rabbitmq_mqtt"],
                env={**os.environ, **self.env},
                cwd=self.root,
                check=True,
                capture_output=True,
                timeout=60,
            )
        except subprocess.CalledProcessError as exc:
            raise StartupError(
                f"rabbitmq-plugins enable rabbitmq_mqtt failed: {exc.stderr.decode()}"
            ) from exc
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StartupError(f"rabbitmq-plugins enable rabbitmq_mqtt failed: {exc}") from exc

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                sock.settimeout(5)
                sock.sendall(_CONNECT)
                if sock.recv(4)[:1] == b"\x20":
                    sock.sendall(_DISCONNECT)
                    return True
                return False
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the node, then its epmd (which Erlang started as a daemon outside the process group)."""
        super().stop()
        subprocess.run(
            [EPMD, "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=10, check=False
        )
