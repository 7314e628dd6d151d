"""The CoAP ingest component: plain/OSCORE on the bind port, DTLS-PSK on port + 1, one aiocoap context."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.config import CoapSettings
from hub.errors import ConfigError, StartupError
from hub.ingest.coap_keys import CoapKeyring
from hub.ingest.coap_site import TRANSPORT, UplinkSite
from hub.ingest.service import IngestService
from provisioning.credentials import CredentialEvents, SecretBox

__all__ = ["CoapIngest", "dtls_available"]

log = logging.getLogger(__name__)
_BIND_ATTEMPTS = 8


def dtls_available() -> bool:
    """Whether DTLSSocket (built by scripts/install_dtls.sh) can be imported."""
    from aiocoap.defaults import dtls_missing_modules

    return not dtls_missing_modules()


class CoapIngest:
    """Serves ``POST /t/{serial}`` over DTLS-PSK, OSCORE and (when allowed) plain CoAP into the pipeline."""

    name = "coap"

    def __init__(
        self,
        settings: CoapSettings,
        ingest: IngestService,
        box: SecretBox,
        credential_events: CredentialEvents,
        state_dir: Path,
        *,
        dtls: bool | None = None,
        max_dtls_sessions: int = 10_000,
        max_oscore_contexts: int = 1000,
    ) -> None:
        from hub.ingest.coap_oscore import DeviceCredentials, OscoreContexts

        self.settings = settings
        self.ingest = ingest
        self.credential_events = credential_events
        self.state_dir = state_dir
        # None: DTLS when DTLSSocket is installed (a warning otherwise); True: required.
        self.dtls = dtls
        self.max_dtls_sessions = max_dtls_sessions
        self.keyring = CoapKeyring(ingest.directory.db, box)
        self.contexts = OscoreContexts(
            state_dir / "oscore", max_open=max_oscore_contexts, refuse=self._refuse_oscore
        )
        self.credentials = DeviceCredentials(
            self.keyring, self.contexts, on_session=ingest.pipeline.states.begin_session
        )
        self.site = UplinkSite(ingest.directory, ingest.pipeline, allow_plain=settings.allow_plain)
        self.port: int | None = None
        self.dtls_port: int | None = None
        self._context: Any = None
        self._dtls_server: Any = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        """Bind and serve; with port 0 (tests) take a free pair of ports."""
        use_dtls = dtls_available() if self.dtls is None else self.dtls
        if use_dtls and not dtls_available():
            raise StartupError("CoAP DTLS needs DTLSSocket: run scripts/install_dtls.sh")
        if not use_dtls:
            log.warning(
                "coap: DTLSSocket is not installed; serving OSCORE%s only",
                " and plain" * self.settings.allow_plain,
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        host, port = self.settings.host, self.settings.port
        for attempt in range(_BIND_ATTEMPTS):
            try:
                await self._bind(host, port, use_dtls)
                break
            except OSError as exc:
                await self._close_context()
                retry = exc.errno == errno.EADDRINUSE and (port == 0 or self.settings.port_fallback)
                if not retry or attempt == _BIND_ATTEMPTS - 1:
                    raise ConfigError(
                        "HUB_COAP_PORT", f"UDP port {port} (or {port + 1} for DTLS) on {host}: {exc.strerror}"
                    ) from exc
                # The port, or its DTLS neighbour, is taken: start again from a free one.
                port = 0
        self._unsubscribe = self.credential_events.subscribe(self._on_credentials)
        log.info("coap: listening on %s udp/%s%s", host, self.port, f", dtls/{self.dtls_port}" * use_dtls)

    async def _bind(self, host: str, port: int, use_dtls: bool) -> None:
        import aiocoap
        from aiocoap.transports.udp6 import MessageInterfaceUDP6

        from hub.ingest.coap_dtls import DTLSServer
        from hub.ingest.coap_oscore import DeviceOscoreSite

        site = DeviceOscoreSite(self.site, self.credentials)
        context = aiocoap.Context(serversite=site, loggername="hub.coap", server_credentials=self.credentials)
        self._context = context

        def plain(mman: Any) -> Any:
            return MessageInterfaceUDP6.create_server_transport_endpoint(
                mman, log=context.log, loop=context.loop, bind=(host, port), multicast=[]
            )

        # aiocoap's create_server_context cannot bind DTLS apart from port + 1 of a fixed port, nor
        # take our DTLS transport: build the context from the same (0.4.x) parts it uses.
        await context._append_tokenmanaged_messagemanaged_transport(plain)
        interface = context.request_interfaces[-1].token_interface.message_interface
        bound: int = interface.transport.get_extra_info("socket").getsockname()[1]
        self.port = bound
        if not use_dtls:
            return

        async def secure(mman: Any) -> Any:
            server = await DTLSServer.create_server(
                (host, bound + 1),
                mman,
                log=context.log,
                loop=context.loop,
                server_credentials=self.credentials,
                keyring=self.keyring,
                max_sessions=self.max_dtls_sessions,
                on_unknown_identity=self._unknown_identity,
            )
            self._dtls_server = server
            return server

        await context._append_tokenmanaged_messagemanaged_transport(secure)
        self.dtls_port = self._dtls_server.port

    def _refuse_oscore(self, device: str, reason: str, detail: str) -> None:
        self.ingest.pipeline.refuse(TRANSPORT, device[:64], reason, detail, b"")

    def _unknown_identity(self, serial: str) -> None:
        detail = "DTLS PSK identity without live keys (unknown, revoked or not a CoAP device)"
        self.ingest.pipeline.refuse(TRANSPORT, serial[:64], "bad_credentials", detail, b"")

    def _on_credentials(self, device_id: int, what: str) -> None:
        # Rotated or revoked: old keys, contexts and tokens must not be used for one more uplink.
        self.keyring.forget(device_id)
        self.contexts.drop(device_id)
        self.site.forget(device_id)

    async def _close_context(self) -> None:
        context, self._context, self._dtls_server = self._context, None, None
        if context is not None:
            await context.shutdown()

    async def stop(self) -> None:
        """Stop listening, drop DTLS sessions and write every OSCORE context's sequence state."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self._close_context()
        self.contexts.close()

    async def health(self) -> tuple[bool, str]:
        """Ports, DTLS sessions, cached keys and open OSCORE contexts."""
        if self._context is None:
            return False, "not started"
        sessions = self._dtls_server.sessions if self._dtls_server is not None else 0
        dtls = f", dtls {self.dtls_port} ({sessions} sessions)" if self._dtls_server is not None else ""
        return True, f"udp {self.port}{dtls}, {len(self.keyring)} keys, {len(self.contexts)} oscore contexts"
