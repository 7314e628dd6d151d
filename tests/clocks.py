"""Clocks the tests move by hand: the hub reads time only through an injected clock."""

from __future__ import annotations

import datetime as dt

__all__ = ["EpochClock", "ManualClock"]


class ManualClock:
    """An aware-datetime clock that moves only when told."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        """Move forward by a timedelta's keyword arguments; returns the new time."""
        self.now += dt.timedelta(**delta)
        return self.now


class EpochClock:
    """An epoch-seconds clock that moves only when told (ingest and the rule engine read these)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
