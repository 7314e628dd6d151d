"""Mosquitto on a free loopback port, anonymous or with a password file and an ACL file; optionally a TLS listener."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hub.errors import StartupError

from ._process import LocalServer, ManagedProcess, free_port

__all__ = ["MosquittoServer", "MosquittoTls", "write_password_file"]

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
# MQTT 3.1.1 CONNECT, clean session, keep-alive 60 s, client id "probe".
_CONNECT = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 5]) + b"probe"
_DISCONNECT = bytes([0xE0, 0])


def write_password_file(path: Path, users: Mapping[str, str]) -> Path:
    """Write a Mosquitto password file (hashed by mosquitto_passwd) for ``users``."""
    path.write_text("".join(f"{user}:{password}\n" for user, password in users.items()))
    try:
        subprocess.run([MOSQUITTO_PASSWD, "-U", str(path)], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise StartupError(f"mosquitto_passwd failed on {path}: {exc}") from exc
    return path


@dataclass(frozen=True)
class MosquittoTls:
    """A TLS listener's files; with ``require_certificate`` clients must present one signed by ``cafile``."""

    cafile: Path
    certfile: Path
    keyfile: Path
    require_certificate: bool = False


class MosquittoServer(LocalServer):
    """One mosquitto process; ``stop()``/``start()`` keep its port and (if enabled) persistence."""

    name = "mosquitto"
    ready_timeout = 15.0

    def __init__(
        self,
        root: Path,
        *,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        persistence: bool = False,
        tls: MosquittoTls | None = None,
    ) -> None:
        self.root = root
        self.port = free_port()
        # The TLS listener's own port; the plain one stays for the devices.
        self.tls_port: int | None = None
        while tls and self.tls_port in (None, self.port):
            self.tls_port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'false' if password_file else 'true'}",
            # 0 = unlimited: the default (1000) silently drops QoS 1 messages for a lagging subscriber.
            "max_queued_messages 0",
            f"persistence {'true' if persistence else 'false'}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if persistence:
            lines.append(f"persistence_location {root}/")
        if password_file:
            lines.append(f"password_file {password_file}")
        if acl_file:
            lines.append(f"acl_file {acl_file}")
        if tls:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {tls.cafile}",
                f"certfile {tls.certfile}",
                f"keyfile {tls.keyfile}",
                f"require_certificate {'true' if tls.require_certificate else 'false'}",
            ]
        if os.geteuid() == 0:
            # As root, mosquitto would switch to user "mosquitto", who cannot read our 0700 temp dir.
            lines.append("user root")
        self.config_path = root / "m.conf"
        self.config_path.write_text("\n".join(lines) + "\n")
        self._process = ManagedProcess(
            "mosquitto",
            [MOSQUITTO, "-c", str(self.config_path)],
            cwd=root,
            log_path=root / "mosquitto.log",
        )

    @property
    def host(self) -> str:
        """Return the address the broker listens on."""
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """Return an ``mqtt://`` URL of the broker."""
        return f"mqtt://{self.host}:{self.port}"

    def _ready(self) -> bool:
        # Any CONNACK counts (even "not authorized"): the broker is up and speaking MQTT.
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(_CONNECT)
                answer = sock.recv(4)
                if answer[:1] == b"\x20":
                    sock.sendall(_DISCONNECT)
                    return True
                return False
        except OSError:
            return False
