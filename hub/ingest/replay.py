"""Replay detection on device sequence numbers: a sliding window, like IPsec's anti-replay."""

from __future__ import annotations

__all__ = ["RESET_BELOW", "WINDOW", "SeqWindow"]

# Out-of-order delivery inside this many numbers is accepted once each (MQTT QoS 1 redelivery, CoAP retries).
WINDOW = 64
# A rebooted device starts again from 0: a number this small after a large one is a restart, not a replay.
RESET_BELOW = 8


class SeqWindow:
    """The highest sequence number seen and a bitmap of the WINDOW numbers below it."""

    __slots__ = ("bitmap", "highest")

    def __init__(self, highest: int = -1, bitmap: int = 0) -> None:
        self.highest = highest
        self.bitmap = bitmap

    def accept(self, seq: int) -> bool:
        """Record ``seq``; False when it was seen before (or is too old to tell)."""
        highest = self.highest
        if seq > highest:
            shift = seq - highest
            self.bitmap = ((self.bitmap << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.highest = seq
            return True
        behind = highest - seq
        if behind < WINDOW:
            bit = 1 << behind
            if self.bitmap & bit:
                return False
            self.bitmap |= bit
            return True
        if seq < RESET_BELOW:
            self.highest, self.bitmap = seq, 1
            return True
        return False
