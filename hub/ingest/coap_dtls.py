"""aiocoap's DTLS server transport, made to look PSKs up asynchronously and to keep a bounded session table."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiocoap.numbers import COAP_PORT
from aiocoap.transports import simplesocketserver, tinydtls, tinydtls_server

from hub.ingest.coap_keys import CoapKeyring
from hub.lifecycle import TaskSet

__all__ = ["DTLSServer", "client_key_exchange_identity"]

log = logging.getLogger(__name__)

_HANDSHAKE = 22
_CLIENT_KEY_EXCHANGE = 16
_RECORD_HEADER = 13  # type, version(2), epoch(2), sequence(6), length(2)
_HANDSHAKE_HEADER = 12  # type, length(3), message_seq(2), fragment_offset(3), fragment_length(3)


def client_key_exchange_identity(datagram: bytes) -> bytes | None:
    """The PSK identity of a cleartext DTLS ClientKeyExchange in ``datagram``, if there is one."""
    offset = 0
    while offset + _RECORD_HEADER <= len(datagram):
        kind = datagram[offset]
        epoch = int.from_bytes(datagram[offset + 3 : offset + 5], "big")
        length = int.from_bytes(datagram[offset + 11 : offset + 13], "big")
        body = datagram[offset + _RECORD_HEADER : offset + _RECORD_HEADER + length]
        offset += _RECORD_HEADER + length
        if kind != _HANDSHAKE or epoch != 0 or len(body) < _HANDSHAKE_HEADER + 2:
            continue
        if body[0] != _CLIENT_KEY_EXCHANGE or body[6:9] != b"\0\0\0":
            continue
        size = int.from_bytes(body[12:14], "big")
        identity = body[14 : 14 + size]
        if len(identity) == size:
            return identity
    return None


class _Address(tinydtls_server._AddressDTLS):  # type: ignore[misc]
    """A DTLS peer that ends its session when the device says close_notify (aiocoap only logs it)."""

    def _event(self, level: int, code: int) -> None:
        if (level, code) == (tinydtls.LEVEL_WARNING, tinydtls.CODE_CLOSE_NOTIFY):
            # Frees the session slot at once instead of waiting to be the oldest.
            self._inject_error(tinydtls.CloseNotifyReceived())
            return
        super()._event(level, code)


class _Socket(tinydtls_server._DatagramServerSocketSimpleDTLS):  # type: ignore[misc]
    """The server socket: holds a handshake until its identity's key is loaded, and evicts the oldest session."""

    _Address = _Address

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keyring: CoapKeyring | None = None
        self.on_unknown_identity: Callable[[str], None] | None = None
        self.tasks = TaskSet()
        self._held: dict[Any, list[bytes]] = {}

    def datagram_received(self, data: bytes, sockaddr: Any) -> None:
        held = self._held.get(sockaddr)
        if held is not None:
            held.append(data)
            return
        identity = client_key_exchange_identity(data) if self.keyring is not None else None
        if identity is not None and self.keyring is not None:
            serial = identity.decode("utf-8", "replace")
            if self.keyring.known_missing(serial):
                self._unknown(serial)
            elif self.keyring.cached(serial) is None:
                # tinydtls asks for the key synchronously: fetch it first, then replay the flight.
                self._held[sockaddr] = [data]
                self.tasks.spawn(self._load_then_feed(sockaddr, serial), name=f"coap-dtls-psk-{serial}")
                return
        self._feed(data, sockaddr)

    def _unknown(self, serial: str) -> None:
        # tinydtls fails such a handshake without telling us: count it here.
        if self.on_unknown_identity is not None:
            self.on_unknown_identity(serial)

    def _feed(self, data: bytes, sockaddr: Any) -> None:
        if sockaddr not in self._connections:
            self._maybe_purge_sockets()
        super().datagram_received(data, sockaddr)

    async def _load_then_feed(self, sockaddr: Any, serial: str) -> None:
        try:
            if self.keyring is not None and await self.keyring.get(serial) is None:
                self._unknown(serial)
        except Exception:
            log.exception("coap: loading the PSK of %s failed", serial)
        finally:
            for data in self._held.pop(sockaddr, ()):
                self._feed(data, sockaddr)


class DTLSServer(tinydtls_server.MessageInterfaceTinyDTLSServer):  # type: ignore[misc]
    """The coaps:// listener on exactly the given port (the component chooses port + 1)."""

    _serversocket = _Socket
    _default_port = COAP_PORT  # aiocoap adds (default port - 5683) to the bind port: add nothing

    @classmethod
    async def create_server(  # type: ignore[override]
        cls,
        bind: tuple[str, int],
        ctx: Any,
        log: logging.Logger,
        loop: asyncio.AbstractEventLoop,
        server_credentials: Any,
        *,
        keyring: CoapKeyring,
        max_sessions: int,
        on_unknown_identity: Callable[[str], None] | None = None,
    ) -> DTLSServer:
        """Bind and serve; sessions past ``max_sessions`` close the least recently active one."""
        self: DTLSServer = await super().create_server(bind, ctx, log, loop, server_credentials)
        self._pool.keyring = keyring
        self._pool.on_unknown_identity = on_unknown_identity
        self._pool.max_sockets = max_sessions
        return self

    @property
    def port(self) -> int:
        """The UDP port really bound."""
        port: int = self._pool._transport.get_extra_info("sockname")[1]
        return port

    @property
    def sessions(self) -> int:
        """DTLS sessions (and handshakes) held now."""
        return len(self._pool._connections)

    async def shutdown(self) -> None:
        """Drop every session quietly (aiocoap's own shutdown reports them to a stopped message layer)."""
        pool = self._pool
        await pool.tasks.stop(1.0)
        timers = [c._retransmission_task for c in pool._connections.values()]
        pool._connections.clear()
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        await simplesocketserver.MessageInterfaceSimpleServer.shutdown(self)
