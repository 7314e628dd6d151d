"""Mosquitto password and ACL files for external-broker mode, written from the device registry.

The hub keeps only argon2 hashes, which Mosquitto cannot read, and a hash cannot be converted. A device's
line is therefore, in order: a Mosquitto hash stored at enrollment (``DeviceSecret.mosquitto_hash``, once
that column exists), else the line a previous export wrote for the same credential generation, else —
only with ``issue=True`` — a freshly issued password (a rotation: printed once, the old one stops working).
Devices left out are listed as skipped, never rotated behind the operator's back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from hub.db import Database
from hub.db.devices import Device, DeviceSecret
from hub.ingest.topics import PROBE_PREFIX
from provisioning.credentials import CredentialStore

__all__ = [
    "ACL_FILE",
    "PASSWORD_FILE",
    "STATE_FILE",
    "ExportResult",
    "acl_text",
    "export_mosquitto",
    "mosquitto_hash",
    "mosquitto_verify",
]

PASSWORD_FILE, ACL_FILE, STATE_FILE = "password_file", "acl_file", "hub-export.json"
# mosquitto_passwd's own format and defaults (2.0): $7$ = PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt.
# Few rounds are enough: the passwords are 128 random bits, not something a person chose.
ROUNDS, SALT_BYTES = 101, 12
# A serial is a username and a topic level: no separators, wildcards, or the password file's colon.
_NOT_IN_SERIAL = frozenset("/+#:\0")
# As CredentialStore: registered devices have not been placed yet, decommissioned ones must stay silent.
_SILENT_STATES = ("registered", "decommissioned")


def mosquitto_hash(password: str, *, salt: bytes | None = None, rounds: int = ROUNDS) -> str:
    """A Mosquitto password-file hash (``$7$rounds$salt$hash``) of ``password``."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"$7${rounds}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_verify(stored: str, password: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash."""
    try:
        _empty, kind, rounds, salt, digest = stored.split("$")
        if kind != "7":
            return False
        mine = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(rounds))
    except ValueError:
        return False
    return hmac.compare_digest(base64.b64encode(mine).decode(), digest)


def acl_text(hub_user: str) -> str:
    """The ACL: each device writes its own uplink topics and reads its own command topic; the hub the rest."""
    return (
        "# Written by `iothub mosquitto export`; %u is the connecting username, i.e. the device serial.\n"
        f"user {hub_user}\n"
        "topic read devices/+/up\n"
        "topic read devices/+/up/+\n"
        "topic read devices/+/status\n"
        "topic read devices/+/cmd/result\n"
        "topic write devices/+/cmd\n"
        "# Shared subscriptions are proven on the hub's own topics (HUB_MQTT_SHARED_GROUP, docs/mqtt.md).\n"
        f"topic readwrite {PROBE_PREFIX}/#\n"
        "\n"
        "pattern write devices/%u/up\n"
        "pattern write devices/%u/up/+\n"
        "pattern write devices/%u/status\n"
        "pattern write devices/%u/cmd/result\n"
        "pattern read devices/%u/cmd\n"
    )


@dataclass
class ExportResult:
    """What an export wrote: kept lines, newly issued passwords (shown once) and skipped devices."""

    out_dir: Path
    kept: list[str] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    hub_password: str | None = None


def _load(out_dir: Path) -> tuple[dict[str, str], dict[str, int]]:
    """The lines of the previous export's password file, and the generation each was written for."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path, state_path = out_dir / PASSWORD_FILE, out_dir / STATE_FILE
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = (line.strip() for line in text.splitlines())
    old = dict(line.split(":", 1) for line in lines if line and not line.startswith("#") and ":" in line)
    state: dict[str, int] = json.loads(state_path.read_text()) if state_path.exists() else {}
    return old, state


def _save(out_dir: Path, lines: dict[str, str], state: dict[str, int], hub_user: str) -> None:
    _write(out_dir / PASSWORD_FILE, "".join(f"{user}:{line}\n" for user, line in lines.items()))
    _write(out_dir / ACL_FILE, acl_text(hub_user))
    _write(out_dir / STATE_FILE, json.dumps(state, indent=1, sort_keys=True) + "\n")


def _write(path: Path, text: str) -> None:
    # Atomic and private: the file holds hashes, and a broker reloading it must never see half of it.
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    tmp.replace(path)


async def export_mosquitto(
    db: Database,
    store: CredentialStore,
    out_dir: Path,
    *,
    hub_user: str,
    hub_password: str | None = None,
    issue: bool = False,
    actor: str = "cli",
) -> ExportResult:
    """Write ``password_file``, ``acl_file`` and the export state into ``out_dir``."""
    old, state = await asyncio.to_thread(_load, out_dir)
    result = ExportResult(out_dir)
    lines: dict[str, str] = {}
    rotated: list[int] = []
    async with db.session() as session:
        rows = await session.execute(
            select(Device, DeviceSecret)
            .join(DeviceSecret, DeviceSecret.device_id == Device.id)
            .where(Device.transport == "mqtt", DeviceSecret.revoked_at.is_(None))
            .where(Device.state.not_in(_SILENT_STATES))
            .order_by(Device.serial)
        )
        for device, secret in rows.all():
            serial = device.serial
            if serial == hub_user:
                continue
            stored: str | None = getattr(secret, "mosquitto_hash", None)
            if not serial or serial.startswith("$") or not _NOT_IN_SERIAL.isdisjoint(serial):
                result.skipped.append(serial)
            elif stored:
                lines[serial] = stored
                result.kept.append(serial)
            elif serial in old and state.get(serial) == secret.generation:
                lines[serial] = old[serial]
                result.kept.append(serial)
            elif issue:
                issued = await store.issue(session, device, actor, "cli")
                lines[serial] = mosquitto_hash(issued.mqtt_password)
                state[serial] = secret.generation
                result.issued[serial] = issued.mqtt_password
                rotated.append(device.id)
            else:
                result.skipped.append(serial)
    for device_id in rotated:
        store.announce(device_id, "rotated")
    if hub_password is not None:
        lines[hub_user] = mosquitto_hash(hub_password)
    elif hub_user in old:
        lines[hub_user] = old[hub_user]
    else:
        result.hub_password = secrets.token_urlsafe(16)
        lines[hub_user] = mosquitto_hash(result.hub_password)
    state = {serial: gen for serial, gen in state.items() if serial in lines}
    await asyncio.to_thread(_save, out_dir, lines, state, hub_user)
    return result
