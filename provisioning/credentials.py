"""Device secrets: MQTT passwords (argon2 hashes), DTLS pre-shared keys and OSCORE keys (AES-GCM at rest)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db import Database
from hub.db.devices import Device, DeviceSecret
from hub.errors import AuthError, Conflict, StoreError
from provisioning.audit import Clock, record, utcnow

__all__ = [
    "ARGON2_MEMORY_KIB",
    "ARGON2_PARALLELISM",
    "ARGON2_TIME_COST",
    "CredentialEvents",
    "CredentialStore",
    "IssuedSecrets",
    "OscoreKeys",
    "SecretBox",
    "hash_password",
    "new_secrets",
    "password_matches",
]

log = logging.getLogger(__name__)

# The password is 128 random bits, so argon2 guards a stolen table, not a guessable secret:
# t=1, m=4 MiB, p=1 costs ~1.7 ms per verify here, which bounds a reconnect storm of 100 k devices
# to ~3 CPU-minutes while still forcing memory-hard work per guess.
ARGON2_TIME_COST = 1
ARGON2_MEMORY_KIB = 4096
ARGON2_PARALLELISM = 1
_HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)


def hash_password(password: str) -> str:
    """Return the argon2id hash stored for an MQTT password."""
    return _HASHER.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    """Check a password against its stored hash, in bounded time; False for a missing or bad hash."""
    if not stored_hash:
        return False
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class OscoreKeys:
    """One OSCORE security context's keys (RFC 8613), from the hub's point of view."""

    master_secret: bytes
    master_salt: bytes
    sender_id: bytes
    recipient_id: bytes

    def to_json(self) -> dict[str, str]:
        """Hex fields, in the shape aiocoap's ``secret.json``/``settings.json`` take."""
        return {
            "secret_hex": self.master_secret.hex(),
            "salt_hex": self.master_salt.hex(),
            "sender-id_hex": self.sender_id.hex(),
            "recipient-id_hex": self.recipient_id.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> OscoreKeys:
        """Read the hex fields back."""
        return cls(
            master_secret=bytes.fromhex(data["secret_hex"]),
            master_salt=bytes.fromhex(data["salt_hex"]),
            sender_id=bytes.fromhex(data["sender-id_hex"]),
            recipient_id=bytes.fromhex(data["recipient-id_hex"]),
        )

    def for_device(self) -> dict[str, str]:
        """The device's mirror image: its sender id is the hub's recipient id."""
        mirrored = OscoreKeys(self.master_secret, self.master_salt, self.recipient_id, self.sender_id)
        return mirrored.to_json()


@dataclass(frozen=True, slots=True)
class IssuedSecrets:
    """Secrets as issued: shown once to the caller, then only hashes and ciphertexts remain."""

    mqtt_password: str
    psk: bytes | None = None
    oscore: OscoreKeys | None = None

    def public(self) -> dict[str, Any]:
        """The one-time view handed to the technician."""
        out: dict[str, Any] = {"mqtt_password": self.mqtt_password}
        if self.psk is not None:
            out["psk_hex"] = self.psk.hex()
        if self.oscore is not None:
            out["oscore"] = self.oscore.for_device()
        return out


def new_secrets(transport: str, device_id: int) -> IssuedSecrets:
    """Draw fresh secrets for a device; CoAP devices also get a 16-byte PSK and OSCORE keys."""
    password = secrets.token_urlsafe(16)
    if transport != "coap":
        return IssuedSecrets(mqtt_password=password)
    # Sender/recipient ids only need to be unique per hub: derive them from the device id.
    rid = b"d" + device_id.to_bytes(4, "big")
    oscore = OscoreKeys(secrets.token_bytes(16), secrets.token_bytes(8), sender_id=b"h", recipient_id=rid)
    return IssuedSecrets(mqtt_password=password, psk=secrets.token_bytes(16), oscore=oscore)


class SecretBox:
    """AES-256-GCM with a key derived (HKDF-SHA256) from Settings.secret_key; the AAD binds a blob to its row."""

    def __init__(self, secret_key: str) -> None:
        key = HKDF(algorithm=SHA256(), length=32, salt=b"iothub-device-secrets", info=b"aes-gcm v1").derive(
            secret_key.encode()
        )
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(key).hexdigest()[:8]

    def seal(self, plaintext: bytes, aad: str) -> str:
        """Encrypt to ``v1.<keyid>.<base64 nonce+ciphertext>``."""
        nonce = secrets.token_bytes(12)
        blob = nonce + self._aead.encrypt(nonce, plaintext, aad.encode())
        return f"v1.{self.key_id}.{base64.urlsafe_b64encode(blob).decode()}"

    def open(self, sealed: str, aad: str) -> bytes:
        """Decrypt; a wrong key, tampered blob or moved blob is a StoreError."""
        try:
            version, _key_id, body = sealed.split(".", 2)
            blob = base64.urlsafe_b64decode(body)
            if version != "v1":
                raise ValueError(version)
            return self._aead.decrypt(blob[:12], blob[12:], aad.encode())
        except (ValueError, InvalidTag) as exc:
            raise StoreError(
                f"cannot decrypt a stored device secret ({aad}); was HUB_SECRET_KEY changed?"
            ) from exc

    def seal_json(self, data: dict[str, str], aad: str) -> str:
        """Encrypt a JSON object."""
        return self.seal(json.dumps(data, sort_keys=True).encode(), aad)

    def open_json(self, sealed: str, aad: str) -> dict[str, str]:
        """Decrypt a JSON object."""
        data: dict[str, str] = json.loads(self.open(sealed, aad))
        return data


Listener = Callable[[int, str], None]


@dataclass
class CredentialEvents:
    """In-process notice of rotated or revoked credentials, so a broker can drop live sessions at once."""

    _listeners: list[Listener] = field(default_factory=list)

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(device_id, what)`` on every publish; returns the unsubscribe function."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return unsubscribe

    def publish(self, device_id: int, what: str) -> None:
        """Tell every subscriber; one failing subscriber does not stop the others."""
        for callback in list(self._listeners):
            try:
                callback(device_id, what)
            except Exception:
                log.exception("credential listener %r failed on %s of device %s", callback, what, device_id)


def _aad(device_id: int, what: str, generation: int) -> str:
    # Binding id, purpose and generation stops a sealed blob being copied to another row or replayed.
    return f"device:{device_id}:{what}:{generation}"


class CredentialStore:
    """Issue, rotate, revoke and look up device secrets; the ingest side calls the lookups at connect."""

    def __init__(self, db: Database, box: SecretBox, events: CredentialEvents, clock: Clock = utcnow) -> None:
        self.db = db
        self.box = box
        self.events = events
        self.clock = clock

    def seal(self, device: Device, issued: IssuedSecrets, generation: int) -> DeviceSecret:
        """The row that keeps ``issued``: a hash of the password, the keys sealed."""
        psk = oscore = None
        if issued.psk is not None:
            psk = self.box.seal(issued.psk, _aad(device.id, "psk", generation))
        if issued.oscore is not None:
            oscore = self.box.seal_json(issued.oscore.to_json(), _aad(device.id, "oscore", generation))
        return DeviceSecret(
            device_id=device.id,
            generation=generation,
            mqtt_hash=hash_password(issued.mqtt_password),
            psk_sealed=psk,
            oscore_sealed=oscore,
            issued_at=self.clock(),
            revoked_at=None,
        )

    async def issue(self, session: AsyncSession, device: Device, actor: str, channel: str) -> IssuedSecrets:
        """Give ``device`` fresh secrets (first issue or rotation); the old ones stop working at once."""
        if device.state == "decommissioned":
            raise Conflict(f"device {device.serial} is decommissioned; it gets no new secrets")
        current = await session.get(DeviceSecret, device.id)
        generation = 1 if current is None else current.generation + 1
        issued = new_secrets(device.transport, device.id)
        row = self.seal(device, issued, generation)
        if current is None:
            session.add(row)
        else:
            for column in (
                "generation",
                "mqtt_hash",
                "psk_sealed",
                "oscore_sealed",
                "issued_at",
                "revoked_at",
            ):
                setattr(current, column, getattr(row, column))
        action = "device.credentials_issued" if generation == 1 else "device.credentials_rotated"
        record(session, actor, channel, action, "device", device.id, {"generation": generation}, self.clock)
        return issued

    async def revoke(
        self, session: AsyncSession, device: Device, actor: str, channel: str, note: str = ""
    ) -> None:
        """Mark the device's secrets revoked: every later connect is refused."""
        current = await session.get(DeviceSecret, device.id)
        if current is None or current.revoked_at is not None:
            raise Conflict(f"device {device.serial} has no live credentials to revoke")
        current.revoked_at = self.clock()
        detail = {"generation": current.generation, "note": note}
        record(session, actor, channel, "device.credentials_revoked", "device", device.id, detail, self.clock)

    def announce(self, device_id: int, what: str) -> None:
        """Tell the broker side, after the change committed, that live sessions must go."""
        self.events.publish(device_id, what)

    async def _live(self, session: AsyncSession, where: object) -> tuple[Device, DeviceSecret] | None:
        row = (
            await session.execute(
                select(Device, DeviceSecret)
                .join(DeviceSecret, DeviceSecret.device_id == Device.id)
                .where(where)  # type: ignore[arg-type]
            )
        ).first()
        if row is None:
            return None
        device, secret = row[0], row[1]
        if secret.revoked_at is not None or device.state in ("decommissioned", "registered"):
            return None
        return device, secret

    async def verify_mqtt_password(self, device: str | int, password: str) -> int:
        """The device id if ``password`` is the live password of the device (serial or id); AuthError otherwise."""
        where = Device.id == device if isinstance(device, int) else Device.serial == device
        async with self.db.session() as session:
            live = await self._live(session, where)
        # Hash even for an unknown device, so timing does not tell which serials exist.
        stored = live[1].mqtt_hash if live else _DUMMY_HASH.get()
        if not password_matches(stored, password) or live is None:
            raise AuthError("device credentials refused")
        return live[0].id

    async def psk_for_identity(self, identity: str | bytes) -> bytes | None:
        """The DTLS pre-shared key of the device whose serial is ``identity``, if it is live."""
        serial = identity.decode("utf-8", "replace") if isinstance(identity, bytes) else identity
        async with self.db.session() as session:
            live = await self._live(session, Device.serial == serial)
        if live is None or live[1].psk_sealed is None:
            return None
        device, secret = live
        return self.box.open(live[1].psk_sealed, _aad(device.id, "psk", secret.generation))

    async def oscore_context_for(self, device: str | int) -> OscoreKeys | None:
        """The hub-side OSCORE keys of a live CoAP device (serial or id)."""
        where = Device.id == device if isinstance(device, int) else Device.serial == device
        async with self.db.session() as session:
            live = await self._live(session, where)
        if live is None or live[1].oscore_sealed is None:
            return None
        found, secret = live
        sealed = live[1].oscore_sealed
        return OscoreKeys.from_json(self.box.open_json(sealed, _aad(found.id, "oscore", secret.generation)))


class _Dummy:
    """A lazily made hash to verify against when the device is unknown."""

    value: str | None = None

    def get(self) -> str:
        if self.value is None:
            self.value = hash_password(secrets.token_urlsafe(16))
        return self.value


_DUMMY_HASH = _Dummy()
