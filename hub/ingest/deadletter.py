"""Refused uplinks, kept with their raw bytes in a bounded ring, logged at most once a minute per device.

A refused uplink that carried an alarm is logged every time instead, by the pipeline (``AlarmRefusal``).
"""

from __future__ import annotations

import base64
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["AlarmRefusal", "DeadLetter", "DeadLetters"]

log = logging.getLogger(__name__)
KEEP_BYTES = 4096


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused uplink."""

    at: float
    transport: str
    device: str
    reason: str
    detail: str
    payload: bytes
    size: int
    alarms: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form for the API."""
        return {
            "at": self.at,
            "transport": self.transport,
            "device": self.device,
            "reason": self.reason,
            "detail": self.detail,
            "size": self.size,
            "payload_b64": base64.b64encode(self.payload).decode(),
            "truncated": self.size > len(self.payload),
            "alarms": list(self.alarms),
        }


@dataclass(frozen=True, slots=True)
class AlarmRefusal:
    """A refused uplink of a device that carried alarm events (those its driver marks ``alarm``)."""

    transport: str
    device: str
    kind: str
    reason: str
    detail: str
    alarms: tuple[str, ...]
    # True: read from the decoded reading; False: guessed from bytes that did not decode.
    decoded: bool

    def event(self, at: float) -> dict[str, Any]:
        """The live-stream event ``alarm_refused``."""
        return {
            "type": "alarm_refused",
            "device": self.device,
            "kind": self.kind,
            "transport": self.transport,
            "reason": self.reason,
            "detail": self.detail,
            "events": list(self.alarms),
            "decoded": self.decoded,
            "at": at,
        }


class DeadLetters:
    """A bounded ring of refused uplinks; the oldest fall out first."""

    def __init__(
        self, capacity: int = 10_000, clock: Callable[[], float] = time.time, log_every: float = 60.0
    ):
        self._ring: deque[DeadLetter] = deque(maxlen=capacity)
        self._clock = clock
        self._log_every = log_every
        self._last_logged: dict[str, float] = {}
        self.total = 0

    def add(
        self,
        transport: str,
        device: str,
        reason: str,
        detail: str,
        payload: bytes,
        *,
        alarms: tuple[str, ...] = (),
        quiet: bool = False,
    ) -> DeadLetter:
        """Keep one refused uplink (its first KEEP_BYTES bytes) and log it unless logged lately (or ``quiet``)."""
        now = self._clock()
        kept = bytes(payload[:KEEP_BYTES])
        letter = DeadLetter(now, transport, device, reason, detail, kept, len(payload), alarms)
        self._ring.append(letter)
        self.total += 1
        if quiet:
            return letter
        last = self._last_logged.get(device)
        if last is None or now - last >= self._log_every:
            if len(self._last_logged) > 100_000:
                self._last_logged.clear()
            self._last_logged[device] = now
            log.warning("refused %s uplink from %s: %s (%s)", transport, device or "?", reason, detail)
        return letter

    def recent(self, limit: int = 100, device: str | None = None) -> list[DeadLetter]:
        """The newest refused uplinks, newest first."""
        out: list[DeadLetter] = []
        for letter in reversed(self._ring):
            if device is None or letter.device == device:
                out.append(letter)
                if len(out) >= limit:
                    break
        return out

    def __len__(self) -> int:
        return len(self._ring)
