"""Duplicate detection on device sequence numbers: a sliding window per device session, like IPsec's anti-replay.

A session is one run of the device's counter. It begins when the device boots (its counter starts again at 0)
or when a transport tells the hub that the device began a new session (an MQTT CONNECT or birth message, a
DTLS handshake, a new OSCORE context). Inside a session a number is taken once; across sessions the counter
may start again. docs/devices.md ("Sequence numbers, sessions and the clock") is the firmware side of this rule.
"""

from __future__ import annotations

import zlib

__all__ = ["RESET_BELOW", "WINDOW", "SeqWindow"]

# Out-of-order delivery inside this many numbers is accepted once each (MQTT QoS 1 redelivery, CoAP retries).
WINDOW = 64
# A number this small, further behind the highest than the window, is a counter that started again.
RESET_BELOW = 8


class SeqWindow:
    """The highest sequence number of the current session, a bitmap of the WINDOW numbers below it, and how
    the session began: the digest of its seq-0 opening frame, and whether a transport just began a new one."""

    __slots__ = ("bitmap", "highest", "opening", "session_begun")

    def __init__(self, highest: int = -1, bitmap: int = 0) -> None:
        self.highest = highest
        self.bitmap = bitmap
        # CRC-32 of the seq-0 frame that opened this session (None: it did not open with 0, or was not seen).
        self.opening: int | None = None
        # A transport began a new session: the next frame may start the count anywhere.
        self.session_begun = False

    def begin_session(self) -> None:
        """A transport says the device began a new session: its next frame is believed wherever it counts from."""
        self.session_begun = True

    def accept(self, seq: int, payload: bytes = b"", *, redelivery: bool = False) -> bool:
        """Record ``seq``; False when it was seen before in this session (or is too old to tell).

        Sequence number 0 always begins a session, unless it repeats the session's opening frame byte for
        byte (``payload``) while that is still inside the window. ``redelivery`` (MQTT DUP) marks a frame the
        device may have sent before: it never begins a session after a transport said one began.
        """
        if seq == 0:
            digest = zlib.crc32(payload)
            if digest == self.opening and self.highest < WINDOW:
                # The opening frame again: a retransmission, or the same frame after one more boot. Its
                # content was taken; if it was a boot, the frames after it must be heard, so believe the next.
                self.session_begun = True
                return False
            self._restart(0, digest)
            return True
        highest = self.highest
        if seq > highest:
            shift = seq - highest
            self.bitmap = ((self.bitmap << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.highest = seq
            self.session_begun = False
            return True
        behind = highest - seq
        if behind < WINDOW:
            bit = 1 << behind
            if not self.bitmap & bit:
                self.bitmap |= bit
                self.session_begun = False
                return True
        elif seq < RESET_BELOW:
            self._restart(seq, None)
            return True
        if self.session_begun and not redelivery:
            self._restart(seq, None)
            return True
        return False

    def _restart(self, seq: int, opening: int | None) -> None:
        self.highest, self.bitmap, self.opening, self.session_begun = seq, 1, opening, False
