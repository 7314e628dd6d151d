"""Simulated NB-IoT devices: ``POST /t/{serial}`` over CoAP, protected with each device's OSCORE context."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from aiocoap.credentials import CredentialsMap, CredentialsMissingError

from drivers.base import Format
from hub.simulate.mqtt_link import LinkStats
from hub.simulate.traffic import SimDevice

__all__ = ["CONTENT_FORMATS", "CoapLink", "device_state_dir"]

log = logging.getLogger(__name__)
CONTENT_FORMATS: dict[str, int] = {"json": 50, "cbor": 60, "binary": 42}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def device_state_dir(base: Path, dev: SimDevice) -> Path:
    """A device's OSCORE folder, named after its keys: rotated keys never reuse old sequence numbers."""
    keys = json.dumps(dev.oscore, sort_keys=True).encode()
    name = dev.serial if _SAFE_NAME.fullmatch(dev.serial) else hashlib.sha256(dev.serial.encode()).hexdigest()
    return base / name / hashlib.sha256(keys).hexdigest()[:12]


class _BySerial(CredentialsMap):  # type: ignore[misc]
    """The client's credentials: the OSCORE context of the device named in the path, found in O(1)."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: dict[str, Any] = {}

    def __bool__(self) -> bool:
        # aiocoap's Context replaces a falsy (empty) map with a fresh one.
        return True

    def credentials_from_request(self, msg: Any) -> Any:
        """The context for ``/t/{serial}``; aiocoap's own lookup sorts every entry on each request."""
        path = msg.opt.uri_path
        context = self.contexts.get(path[1]) if len(path) == 2 and path[0] == "t" else None
        if context is None:
            raise CredentialsMissingError(f"no OSCORE context for {'/'.join(path)}")
        return context


class CoapLink:
    """The CoAP side of a fleet: one aiocoap client, one OSCORE context per device, bounded requests in flight."""

    transport = "coap"

    def __init__(
        self, host: str, port: int, state_dir: Path, *, in_flight: int = 32, timeout: float = 10.0
    ) -> None:
        self.host = host
        self.port = port
        self.state_dir = state_dir
        self.timeout = timeout
        self.max_pending = in_flight * 10
        self.stats = LinkStats()
        self._gate = asyncio.Semaphore(in_flight)
        self._credentials = _BySerial()
        self._context: Any = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: set[asyncio.Task[None]] = set()
        bracketed = f"[{host}]" if ":" in host else host
        self._base = f"coap://{bracketed}:{port}/t/"

    def has(self, serial: str) -> bool:
        """Whether ``serial`` has a usable OSCORE context."""
        return serial in self._credentials.contexts

    async def open(self, devices: list[SimDevice]) -> None:
        """Start the client and open every device's OSCORE context from the keys in the fleet file."""
        import aiocoap

        self._context = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
        self._context.client_credentials = self._credentials
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for dev in devices:
            try:
                self._credentials.contexts[dev.serial] = self._security_context(dev)
            except Exception as exc:
                self.stats.refused += 1
                log.warning("simulator: %s has no usable OSCORE context: %s", dev.serial, exc)
            else:
                self.stats.connected += 1

    def _security_context(self, dev: SimDevice) -> Any:
        from aiocoap import oscore

        if dev.oscore is None:
            raise ValueError("the fleet file holds no OSCORE keys for it")
        folder = device_state_dir(self.state_dir, dev)
        if folder.parent.exists():
            for old in folder.parent.iterdir():
                # Sequence state of other keys must never be reused with these.
                if old != folder:
                    shutil.rmtree(old, ignore_errors=True)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(folder / "secret.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(dev.oscore, out)
        return oscore.FilesystemSecurityContext(str(folder))

    async def send(self, dev: SimDevice, payload: bytes, fmt: Format | None) -> None:
        """POST one uplink and wait for the answer; ``fmt`` None sends no Content-Format (the hub sniffs)."""
        if self._context is None or not self.has(dev.serial):
            self.stats.failed += 1
            return
        # One request at a time per device keeps its sequence numbers in order, as on a real device.
        lock = self._locks.setdefault(dev.serial, asyncio.Lock())
        async with lock, self._gate:
            await self._post(dev, payload, fmt)

    def send_soon(self, dev: SimDevice, payload: bytes, fmt: Format | None) -> None:
        """Send without waiting for the answer, so slow round trips do not slow the shared rate."""
        if len(self._pending) >= self.max_pending:
            # The hub answers slower than the rate asks: drop rather than queue without bound.
            self.stats.failed += 1
            return
        task = asyncio.create_task(self.send(dev, payload, fmt), name=f"sim-coap-{dev.serial}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, dev: SimDevice, payload: bytes, fmt: Format | None) -> None:
        import aiocoap
        from aiocoap.numbers import codes

        request = aiocoap.Message(code=aiocoap.POST, uri=self._base + dev.serial, payload=payload)
        if fmt is not None and fmt in CONTENT_FORMATS:
            request.opt.content_format = CONTENT_FORMATS[fmt]
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._context.request(request).response
        except (TimeoutError, OSError, aiocoap.error.Error) as exc:
            self.stats.failed += 1
            log.debug("simulator: CoAP uplink of %s failed: %r", dev.serial, exc)
            return
        if response.code == codes.CHANGED:
            self.stats.published += 1
        else:
            self.stats.rejected += 1
            log.debug("simulator: %s got %s %r", dev.serial, response.code, response.payload[:40])

    async def drain(self) -> None:
        """Wait for every request in flight to be answered (or time out)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def close(self) -> None:
        """Cancel what is in flight, stop the client and write each context's sequence state."""
        pending = list(self._pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        context, self._context = self._context, None
        if context is not None:
            await context.shutdown()
        contexts, self._credentials.contexts = self._credentials.contexts, {}
        for security in contexts.values():
            if security.lockfile is not None:
                security._destroy()
