"""Binding listening sockets: the configured port, or a free one when fallback is allowed."""

from __future__ import annotations

import errno
import socket

from hub.errors import ConfigError

__all__ = ["bind_tcp", "free_port", "port_is_free"]


def bind_tcp(host: str, port: int, *, fallback: bool, setting: str) -> socket.socket:
    """Bind a listening TCP socket; on EADDRINUSE take a free port if ``fallback``, else fail naming ``setting``."""
    try:
        return _bind(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE and fallback:
            return _bind(host, 0)
        why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
        raise ConfigError(setting, f"port {port} on {host} {why}") from exc


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
    # it every keep-alive HTTP answer waited ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # Same as uvicorn and asyncio servers: a restart may rebind over TIME_WAIT sockets.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def port_is_free(host: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    """Tell whether ``port`` can be bound right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free a moment ago (for servers that cannot take a bound socket)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
