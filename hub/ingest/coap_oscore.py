"""OSCORE and DTLS-PSK for aiocoap: per-device security contexts and a credentials map backed by the keyring."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiocoap import error, oscore
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

from hub.ingest.coap_keys import CoapKeyring, DeviceIdentity, KeyRecord
from provisioning.credentials import OscoreKeys

__all__ = ["DeviceCredentials", "DeviceOscoreContext", "DeviceOscoreSite", "OscoreContexts"]

log = logging.getLogger(__name__)
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# (device serial or kid, reason, detail): what aiocoap refuses inside OSCORE is counted like any refusal.
Refuse = Callable[[str, str, str], None]


def _ignore(_device: str, _reason: str, _detail: str) -> None:
    return None


class DeviceOscoreContext(oscore.FilesystemSecurityContext):  # type: ignore[misc]
    """aiocoap's file-backed context, but keys come from the sealed registry: only sequence.json is on disk."""

    def __init__(
        self, basedir: Path, keys: OscoreKeys, identity: DeviceIdentity, refuse: Refuse = _ignore
    ) -> None:
        self._keys = keys
        self._refuse = refuse
        self.authenticated_claims = [identity]
        # True until the first request: no sequence state existed, so the device's context is new too.
        self.fresh = False
        # The parent takes the directory lock, then calls our _load.
        super().__init__(str(basedir))

    def _load(self) -> None:
        keys = self._keys
        self.alg_aead = oscore.algorithms[oscore.DEFAULT_ALGORITHM]
        self.hashfun = oscore.hashfunctions[oscore.DEFAULT_HASHFUNCTION]
        self.sender_id = keys.sender_id
        self.recipient_id = keys.recipient_id
        self.id_context = None
        self.derive_keys(keys.master_salt, keys.master_secret)
        self.recipient_replay_window = oscore.ReplayWindow(
            oscore.DEFAULT_WINDOWSIZE, self._replay_window_changed
        )
        try:
            with open(os.path.join(self.basedir, "sequence.json"), encoding="utf-8") as f:
                sequence = json.load(f)
        except FileNotFoundError:
            # A context never used before: nothing can have been seen, so an empty window is exact.
            self.sender_sequence_number = 0
            self.recipient_replay_window.initialize_empty()
            self.replay_window_persisted = True
            self.fresh = True
            return
        self.sender_sequence_number = int(sequence["next-to-send"])
        received = sequence["received"]
        if received == "unknown":
            # After a crash the window is unknown: aiocoap recovers freshness with an Echo round trip.
            self.replay_window_persisted = False
        else:
            self.recipient_replay_window.initialize_from_persisted(received)
            self.replay_window_persisted = True

    def unprotect(self, protected_message: Any, request_id: Any = None) -> Any:
        """aiocoap's unprotect; a replay or a message of other keys is counted, the latter answered 4.01."""
        serial = self.authenticated_claims[0].serial
        try:
            return super().unprotect(protected_message, request_id)
        except oscore.ReplayError:
            self._refuse(serial, "replayed", "OSCORE sequence number seen before")
            raise
        except oscore.ReplayErrorWithEcho:
            raise  # freshness recovery after a restart, not an attack
        except oscore.ProtectionInvalid as exc:
            self._refuse(serial, "bad_credentials", f"OSCORE: {exc}")
            raise error.Unauthorized("Decryption failed") from exc


def _folder(serial: str, device_id: int) -> str:
    return serial if _SAFE_NAME.fullmatch(serial) else f"id-{device_id}"


class OscoreContexts:
    """Open OSCORE contexts, one directory per device under ``base_dir``, at most ``max_open`` at once."""

    def __init__(self, base_dir: Path, *, max_open: int = 1000, refuse: Refuse = _ignore) -> None:
        self.base_dir = base_dir
        self.max_open = max_open
        self.refuse = refuse
        self._open: dict[int, DeviceOscoreContext] = {}

    def __len__(self) -> int:
        return len(self._open)

    def get(self, record: KeyRecord) -> DeviceOscoreContext | None:
        """The device's context, opened on first use; None when it cannot be (keys missing, locked elsewhere)."""
        context = self._open.get(record.device_id)
        identity = record.identity("oscore")
        if context is not None and context.authenticated_claims == [identity]:
            return context
        self.drop(record.device_id)
        if record.oscore is None:
            return None
        device_dir = self.base_dir / _folder(record.serial, record.device_id)
        folder = device_dir / f"g{record.generation}"
        for old in device_dir.glob("g*") if device_dir.exists() else ():
            # Sequence state of rotated keys must never be reused with new ones.
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            context = DeviceOscoreContext(folder, record.oscore, identity, self.refuse)
        except Exception:
            log.warning(
                "coap: cannot open the OSCORE context of %s in %s", record.serial, folder, exc_info=True
            )
            return None
        while len(self._open) >= self.max_open:
            self.drop(next(iter(self._open)))
        self._open[record.device_id] = context
        return context

    def drop(self, device_id: int) -> None:
        """Close a device's context: write its sequence state and release the directory lock."""
        context = self._open.pop(device_id, None)
        if context is not None and context.lockfile is not None:
            context._destroy()

    def close(self) -> None:
        """Close every open context."""
        for device_id in list(self._open):
            self.drop(device_id)


class DeviceCredentials(CredentialsMap):  # type: ignore[misc]
    """aiocoap's server credentials, answered from the keyring instead of a static map.

    ``on_session`` hears of a device beginning a new session: a DTLS handshake, or a request on an OSCORE
    context never used before (new keys). Its payload counter may then start again (hub/ingest/replay.py).
    """

    def __init__(
        self,
        keyring: CoapKeyring,
        contexts: OscoreContexts,
        on_session: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self.keyring = keyring
        self.contexts = contexts
        self.on_session = on_session

    def __bool__(self) -> bool:
        # aiocoap's Context replaces a falsy (empty) map with a fresh one.
        return True

    def find_dtls_psk(self, identity: bytes) -> tuple[bytes, DeviceIdentity]:
        """The PSK for a DTLS identity (the serial); KeyError when unknown, so the handshake fails."""
        record = self.keyring.cached(identity.decode("utf-8", "replace"))
        if record is None or record.psk is None:
            raise KeyError(identity)
        # Asked once per handshake: only a holder of the key can send anything in the session it begins.
        if self.on_session is not None:
            self.on_session(record.device_id)
        return record.psk, record.identity("dtls")

    def find_oscore(self, unprotected: dict[Any, Any]) -> DeviceOscoreContext:
        """The context whose recipient id is the request's kid; KeyError when none."""
        kid = unprotected.get(oscore.COSE_KID)
        if unprotected.get(oscore.COSE_KID_CONTEXT) is not None or not isinstance(kid, bytes):
            raise KeyError(kid)
        record = self.keyring.cached_by_kid(kid)
        context = None if record is None else self.contexts.get(record)
        if context is None:
            device = record.serial if record is not None else f"kid:{kid.hex()}"
            self.contexts.refuse(device, "bad_credentials", "no usable OSCORE context for this kid")
            raise KeyError(kid)
        if context.fresh:
            context.fresh = False
            if self.on_session is not None and record is not None:
                self.on_session(record.device_id)
        return context

    def find_all_used_contextless_oscore_kid(self) -> set[bytes]:
        """No EDHOC here: no kid is reserved."""
        return set()


class DeviceOscoreSite(OscoreSiteWrapper):  # type: ignore[misc]
    """aiocoap's OSCORE site wrapper that first loads the keys of the kid it sees (the lookup there is sync)."""

    def __init__(self, inner_site: Any, credentials: DeviceCredentials) -> None:
        super().__init__(inner_site, credentials)
        self.keyring = credentials.keyring

    async def render_to_pipe(self, pipe: Any) -> None:
        """Load the kid's keys if needed, then unprotect, render and protect as aiocoap does."""
        try:
            unprotected = oscore.verify_start(pipe.request)
        except (oscore.NotAProtectedMessage, oscore.ProtectionInvalid):
            pass  # plain, or malformed: the parent answers both as it always does
        else:
            kid = unprotected.get(oscore.COSE_KID)
            if isinstance(kid, bytes):
                await self.keyring.get_by_kid(kid)
        await super().render_to_pipe(pipe)
