"""The device gate: who may connect over MQTT, what each device may publish and subscribe, and where it goes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from drivers.base import MAX_PAYLOAD
from hub.errors import DecodeError
from hub.ingest.commands import Commands
from hub.ingest.directory import DeviceDirectory, DeviceEntry
from hub.ingest.pipeline import Pipeline
from hub.ingest.topics import DeviceTopic, device_may_publish, device_may_subscribe, status_topic
from provisioning.credentials import password_matches

__all__ = ["TRANSPORT", "DeviceGate"]

log = logging.getLogger(__name__)
TRANSPORT = "mqtt"
ONLINE, OFFLINE = b"online", b"offline"


class DeviceGate:
    """Registry-backed MQTT authentication and topic ACL, and the routing of a device's messages."""

    def __init__(
        self,
        directory: DeviceDirectory,
        pipeline: Pipeline,
        commands: Commands,
        *,
        max_payload: int = MAX_PAYLOAD,
        verify: Callable[[str | None, str], bool] = password_matches,
    ) -> None:
        self.directory = directory
        self.pipeline = pipeline
        self.commands = commands
        self.max_payload = max_payload
        self._verify = verify
        # serial -> credential generation its live session authenticated with (rotation closes stale ones)
        self.generations: dict[str, int] = {}

    def _refuse(
        self, serial: str, reason: str, detail: str, payload: bytes = b"", entry: DeviceEntry | None = None
    ) -> None:
        self.pipeline.refuse(TRANSPORT, serial, reason, detail, payload, entry=entry)

    async def authenticate(
        self, username: str | None, password: str | None, client_id: str
    ) -> DeviceEntry | None:
        """The device if ``username`` (its serial) and ``password`` are live credentials; None (counted) if not."""
        if not username or password is None:
            self._refuse(username or "", "bad_credentials", "CONNECT without username and password")
            return None
        if client_id != username:
            # amqtt keys sessions by client id: another device's id would take over that device's session.
            self._refuse(username, "bad_client_id", f"client id {client_id[:64]!r} is not the serial")
            return None
        entry = await self.directory.lookup(username)
        if entry is None:
            self._refuse(username, "unknown_device", "no device with this serial")
            return None
        if not entry.accepting:
            self._refuse(username, "revoked", f"credentials revoked or device {entry.state}")
            return None
        # argon2 takes milliseconds of CPU: never in the event loop.
        if not await asyncio.to_thread(self._verify, entry.mqtt_hash, password):
            self._refuse(username, "bad_credentials", "wrong password")
            return None
        self.generations[username] = entry.generation
        # A CONNECT begins a new session: a rebooted device's counter may start again (hub/ingest/replay.py).
        self.pipeline.states.begin_session(entry.id)
        return entry

    def may_subscribe(self, serial: str | None, topic_filter: str) -> bool:
        """Whether a device may subscribe to ``topic_filter`` (its own command topic only); counts refusals."""
        if serial is not None and device_may_subscribe(serial, topic_filter):
            return True
        self._refuse(serial or "", "acl", f"subscribe to {topic_filter[:200]!r} refused")
        return False

    def may_receive(self, serial: str | None, topic: str) -> bool:
        """Whether a session of ``serial`` may be sent a message on ``topic``."""
        return serial is not None and device_may_subscribe(serial, topic)

    def publish_from(self, serial: str, topic: str, payload: bytes, *, redelivery: bool = False) -> bool:
        """Take one PUBLISH of an authenticated device session (``redelivery``: its DUP flag); False when refused."""
        parsed = device_may_publish(serial, topic)
        if parsed is None:
            self._refuse(serial, "acl", f"publish to {topic[:200]!r} refused", payload)
            return False
        entry = self.directory.get(serial)
        if entry is None or not entry.accepting:
            self._refuse(serial, "revoked", "device no longer accepted", payload, entry)
            return False
        return self.deliver(entry, parsed, payload, redelivery=redelivery)

    def deliver(
        self,
        entry: DeviceEntry,
        parsed: DeviceTopic,
        payload: bytes,
        *,
        redelivery: bool = False,
        retained: bool = False,
    ) -> bool:
        """Route a message of a known, accepting device on one of its own topics; False when refused.

        ``redelivery``: the device's DUP flag; ``retained``: a broker's stored message sent at subscribe time.
        """
        if len(payload) > self.max_payload:
            detail = f"payload of {len(payload)} bytes exceeds {self.max_payload}"
            self._refuse(entry.serial, "too_large", detail, payload, entry)
            return False
        if parsed.kind == "up":
            try:
                self.pipeline.accept(entry, payload, TRANSPORT, parsed.fmt, redelivery=redelivery)
            except DecodeError:
                return False  # counted and dead-lettered by the pipeline
            return True
        if parsed.kind == "status":
            return self.status(entry, payload, "last will", retained=retained)
        if parsed.kind == "result":
            return self.commands.on_result(entry, payload, TRANSPORT) is not None
        self._refuse(entry.serial, "acl", f"devices do not publish on {parsed.kind}", payload)
        return False

    def status(self, entry: DeviceEntry, payload: bytes, why: str, *, retained: bool = False) -> bool:
        """Apply a status message: "online" (the birth message) or "offline" (the last will).

        A birth that is not a broker's retained copy begins a new session: behind an external broker it is
        the only sign of a device's (re)connect the hub gets.
        """
        word = payload.strip().lower()
        if word == OFFLINE:
            self.pipeline.went_offline(entry, why)
            return True
        if word == ONLINE:
            if not retained:
                self.pipeline.states.begin_session(entry.id)
            self.pipeline.states.set_online(entry.id, True)
            return True
        self._refuse(entry.serial, "bad_status", "status must be online or offline", payload)
        return False

    def will(self, serial: str, topic: str, payload: bytes) -> None:
        """Apply a device's last will, sent by the broker after an unclean disconnect."""
        entry = self.directory.get(serial)
        if entry is None:
            return
        if topic != status_topic(serial):
            self._refuse(serial, "acl", f"last will on {topic[:200]!r} refused", payload)
            return
        self.status(entry, payload, "last will")

    def lost(self, serial: str) -> None:
        """A session ended without DISCONNECT: the device is offline unless its will said so already."""
        entry = self.directory.get(serial)
        if entry is None:
            return
        live = self.pipeline.states.get(entry.id)
        if live is None or live.online:
            self.pipeline.went_offline(entry, "connection lost")
