"""The CoAP uplink resource: ``POST /t/{serial}``, authenticated by DTLS-PSK, OSCORE or (if allowed) a token."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import aiocoap
from aiocoap import resource
from aiocoap.numbers import codes

from drivers.base import MAX_PAYLOAD, DecodeMeta
from hub.errors import DecodeError
from hub.ingest.coap_keys import DeviceIdentity
from hub.ingest.directory import DeviceDirectory, DeviceEntry
from hub.ingest.pipeline import Pipeline
from provisioning.credentials import password_matches

__all__ = ["TOKEN_QUERY", "TRANSPORT", "UplinkSite"]

TRANSPORT = "coap"
# Plain CoAP only: the device's MQTT password as ``?t=<password>``.
TOKEN_QUERY = "t="
# Reasons a device may retry later rather than fix its payload.
_RETRY_LATER = frozenset({"store_full"})


def _reply(code: aiocoap.numbers.Code, text: str = "", **options: Any) -> aiocoap.Message:
    return aiocoap.Message(code=code, payload=text.encode(), **options)


def _claim(remote: Any) -> DeviceIdentity | None:
    """The identity DTLS or OSCORE authenticated, if any (plain CoAP has none)."""
    claims = getattr(remote, "authenticated_claims", None) or ()
    return next((c for c in claims if isinstance(c, DeviceIdentity)), None)


class UplinkSite(resource.Resource, resource.PathCapable):  # type: ignore[misc]
    """The site root: uplinks at /t/{serial}, 4.04 elsewhere; payloads capped at MAX_PAYLOAD even block-wise."""

    def __init__(self, directory: DeviceDirectory, pipeline: Pipeline, *, allow_plain: bool) -> None:
        super().__init__()
        self.directory = directory
        self.pipeline = pipeline
        self.allow_plain = allow_plain
        # device id → (generation, sha256 of the last token that verified): argon2 once per device, not per uplink.
        self._good_tokens: dict[int, tuple[int, bytes]] = {}

    def get_resources_as_linkheader(self) -> Any:
        """Nothing is advertised in /.well-known/core."""
        from aiocoap.util.linkformat import LinkFormat

        return LinkFormat([])

    async def render_to_pipe(self, pipe: Any) -> None:
        """Route, refuse oversized block-wise bodies before aiocoap assembles them, then render."""
        request = pipe.request
        path = request.opt.uri_path
        if len(path) != 2 or path[0] != "t" or not path[1]:
            pipe.add_response(_reply(codes.NOT_FOUND), is_last=True)
            return
        if request.code != codes.POST:
            pipe.add_response(_reply(codes.METHOD_NOT_ALLOWED), is_last=True)
            return
        block1 = request.opt.block1
        announced = request.opt.size1 or 0
        received = (block1.start if block1 is not None else 0) + len(request.payload)
        if max(announced, received) > MAX_PAYLOAD:
            size = max(announced, received)
            detail = f"body of {size}+ bytes exceeds {MAX_PAYLOAD}"
            self.pipeline.refuse(TRANSPORT, path[1], "too_large", detail, request.payload[:1024])
            reply = _reply(codes.REQUEST_ENTITY_TOO_LARGE, "too_large", size1=MAX_PAYLOAD)
            pipe.add_response(reply, is_last=True)
            return
        await super().render_to_pipe(pipe)

    async def needs_blockwise_assembly(self, request: Any) -> bool:
        """Let aiocoap assemble Block1 bodies (the limit is enforced per block above)."""
        return True

    async def render(self, request: Any) -> aiocoap.Message:
        """Authenticate, decode and record one uplink."""
        serial = request.opt.uri_path[1]
        payload = request.payload
        entry = await self.directory.lookup(serial)
        refused = await self._authenticate(request, serial, entry)
        if refused is not None:
            code, reason, detail = refused
            self.pipeline.refuse(TRANSPORT, serial, reason, detail, payload)
            return _reply(code, reason)
        assert entry is not None  # _authenticate refuses unknown devices
        fmt = DecodeMeta.from_content_format(request.opt.content_format).fmt
        try:
            self.pipeline.accept(entry, payload, TRANSPORT, fmt)
        except DecodeError as exc:
            # The pipeline has counted and dead-lettered it already.
            if exc.reason in _RETRY_LATER:
                return _reply(codes.SERVICE_UNAVAILABLE, exc.reason, max_age=5)
            return _reply(codes.BAD_REQUEST, exc.reason)
        return _reply(codes.CHANGED)

    async def _authenticate(
        self, request: Any, serial: str, entry: DeviceEntry | None
    ) -> tuple[aiocoap.numbers.Code, str, str] | None:
        """None when the request may go to the pipeline, else (code, reason, detail)."""
        claim = _claim(request.remote)
        if claim is not None and claim.serial != serial:
            # Authenticated as another device: never post for someone else.
            return codes.FORBIDDEN, "acl", f"{claim.method} identity {claim.serial} posted to /t/{serial}"
        if entry is None:
            return codes.UNAUTHORIZED, "unknown_device", f"no device with serial {serial}"
        if entry.revoked:
            return codes.UNAUTHORIZED, "revoked", "the device's credentials are revoked"
        if not entry.accepting:
            return codes.UNAUTHORIZED, "revoked", f"the device is {entry.state}"
        if claim is not None:
            if claim.device_id != entry.id or claim.generation != entry.generation:
                # A session or context of keys that were rotated since.
                return codes.UNAUTHORIZED, "bad_credentials", f"{claim.method} keys of a past generation"
            return None
        if not self.allow_plain:
            return codes.UNAUTHORIZED, "bad_credentials", "plain CoAP is off: use DTLS or OSCORE"
        token = next((q[len(TOKEN_QUERY) :] for q in request.opt.uri_query if q.startswith(TOKEN_QUERY)), "")
        if not token or not await self._token_ok(entry, token):
            return codes.UNAUTHORIZED, "bad_credentials", "missing or wrong token"
        return None

    async def _token_ok(self, entry: DeviceEntry, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).digest()
        known = self._good_tokens.get(entry.id)
        if known is not None and known[0] == entry.generation and hmac.compare_digest(known[1], digest):
            return True
        # argon2 costs ~2 ms: never in the event loop.
        if not await asyncio.to_thread(password_matches, entry.mqtt_hash, token):
            return False
        if len(self._good_tokens) > 200_000:
            self._good_tokens.clear()
        self._good_tokens[entry.id] = (entry.generation, digest)
        return True

    def forget(self, device_id: int) -> None:
        """Drop a device's remembered token (after rotation or revocation)."""
        self._good_tokens.pop(device_id, None)
