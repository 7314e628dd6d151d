"""Deadman deadlines per device: O(1) per uplink, O(expired + lazily re-armed) per tick.

An uplink only stores the device's new deadline in a dict. The schedule (a timer wheel, or a heap
for comparison) keeps one entry per device at a time no later than its true deadline; when a tick
reaches an entry whose device has since been heard, the entry is moved to the current deadline
instead of being deleted on every uplink ("lazy deletion").
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from typing import Literal, Protocol

__all__ = ["DeadmanTracker", "HeapSchedule", "Schedule", "WheelSchedule"]


class Schedule(Protocol):
    """Where deadlines wait: ``add`` one, ``due`` takes every entry at or before ``now``."""

    def add(self, deadline: float, key: int) -> None:
        """Schedule a look at ``key`` at ``deadline``."""

    def due(self, now: float) -> list[int]:
        """Remove and return the keys whose entries are due."""

    def __len__(self) -> int: ...


class HeapSchedule:
    """A binary heap of (deadline, key): O(log n) per add and per due entry."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []

    def add(self, deadline: float, key: int) -> None:
        """Schedule a look at ``key`` at ``deadline``."""
        heapq.heappush(self._heap, (deadline, key))

    def due(self, now: float) -> list[int]:
        """Remove and return the keys whose entries are due."""
        heap, out = self._heap, []
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[1])
        return out

    def __len__(self) -> int:
        return len(self._heap)


class WheelSchedule:
    """Buckets of ``resolution`` seconds: O(1) per add, one int reference per entry."""

    def __init__(self, resolution: float = 1.0) -> None:
        self.resolution = resolution
        self._buckets: dict[int, list[int]] = {}
        self._done: int | None = None  # every bucket up to this one is empty
        self._size = 0

    def add(self, deadline: float, key: int) -> None:
        """Schedule a look at ``key`` at ``deadline`` (a past deadline goes into the next due bucket)."""
        slot = math.floor(deadline / self.resolution)
        if self._done is not None and slot <= self._done:
            slot = self._done + 1
        bucket = self._buckets.get(slot)
        if bucket is None:
            self._buckets[slot] = [key]
        else:
            bucket.append(key)
        self._size += 1

    def due(self, now: float) -> list[int]:
        """Every key of the buckets up to ``now``'s; the caller re-adds those not due yet."""
        last = math.floor(now / self.resolution)
        if self._done is None:
            if not self._buckets:
                return []
            # Done up to the bucket before now (or before the earliest entry), never beyond now: a deadline added
            # later that falls before the first one known must not be pushed back to it.
            self._done = min(*self._buckets, last) - 1
        out: list[int] = []
        slots: Iterable[int] = range(self._done + 1, last + 1)
        if last - self._done > len(self._buckets):
            # After a long pause (or deadlines far in the past), visit the buckets there are, not every slot.
            slots = sorted(slot for slot in self._buckets if slot <= last)
        for slot in slots:
            bucket = self._buckets.pop(slot, None)
            if bucket is not None:
                out.extend(bucket)
        # The bucket holding ``now`` is only partly due: keep it open for the next tick.
        self._done = max(self._done, last - 1)
        self._size -= len(out)
        return out

    def __len__(self) -> int:
        return self._size


class DeadmanTracker:
    """Per-device deadlines, expiry, and the tracker's own heartbeat and counters."""

    def __init__(self, schedule: Literal["wheel", "heap"] = "wheel", *, resolution: float = 1.0) -> None:
        self._schedule: Schedule = WheelSchedule(resolution) if schedule == "wheel" else HeapSchedule()
        self._due: dict[int, float] = {}
        self._expired: dict[int, float] = {}
        self.last_tick: float | None = None
        self.started: float | None = None
        self.last_lag = 0.0
        self.max_lag = 0.0
        self.ticks = 0
        self.expired_total = 0
        self.recovered_total = 0
        self.rescheduled_total = 0

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: int) -> bool:
        return key in self._due or key in self._expired

    def touch(self, key: int, deadline: float) -> bool:
        """An uplink: move ``key``'s deadline; True when it had expired (its alert should resolve)."""
        due = self._due
        if key in due:
            due[key] = deadline  # the schedule entry stays where it is and is moved when reached
            return False
        return self._arm(key, deadline)

    def arm(self, key: int, deadline: float) -> None:
        """Track ``key`` from a known deadline (start-up: last_seen + span), expired or not."""
        self._arm(key, deadline)

    def start(self, now: float) -> None:
        """Record the start time, the reference for ``stalled`` until the first tick."""
        self.started = now

    def _arm(self, key: int, deadline: float) -> bool:
        recovered = self._expired.pop(key, None) is not None
        self.recovered_total += recovered
        self._due[key] = deadline
        self._schedule.add(deadline, key)
        return recovered

    def retry(self, key: int, deadline: float) -> None:
        """An expiry whose alert could not be fired: back to due at the same deadline, seen again next tick."""
        if self._expired.pop(key, None) is None:
            return
        self.expired_total -= 1
        self._due[key] = deadline
        self._schedule.add(deadline, key)

    def retime(self, key: int, deadline: float) -> None:
        """Set a deadline that may be earlier than the current one (the rule's span changed)."""
        old = self._due.get(key)
        if old is None:
            return
        self._due[key] = deadline
        if deadline < old:
            self._schedule.add(deadline, key)

    def forget(self, key: int) -> None:
        """Stop tracking ``key`` (decommissioned, or no inactivity rule applies any more)."""
        self._due.pop(key, None)
        self._expired.pop(key, None)

    def deadline(self, key: int) -> float | None:
        """The current deadline of a tracked, unexpired key."""
        return self._due.get(key)

    def keys(self) -> Iterable[int]:
        """Every tracked key, expired or not."""
        return [*self._due, *self._expired]

    def expired(self) -> dict[int, float]:
        """Keys whose deadline passed without an uplink since, with that deadline."""
        return dict(self._expired)

    def expire(self, now: float) -> list[tuple[int, float]]:
        """One tick: the (key, deadline) pairs that expired since the last tick."""
        due, out = self._due, []
        schedule = self._schedule
        for key in schedule.due(now):
            deadline = due.get(key)
            if deadline is None:
                continue  # forgotten, expired already, or a duplicate entry
            if deadline <= now:
                del due[key]
                self._expired[key] = deadline
                out.append((key, deadline))
            else:
                schedule.add(deadline, key)
                self.rescheduled_total += 1
        self.ticks += 1
        self.last_tick = now
        self.last_lag = max((now - d for _, d in out), default=0.0)
        self.max_lag = max(self.max_lag, self.last_lag)
        self.expired_total += len(out)
        return out

    def stalled(self, now: float, max_lag: float) -> bool:
        """True when no tick ran for ``max_lag`` seconds, or the last tick found deadlines that late."""
        reference = self.last_tick if self.last_tick is not None else self.started
        if reference is None:
            return False  # never started nor ticked: nothing can be late yet
        return now - reference > max_lag or self.last_lag > max_lag

    def stats(self) -> dict[str, float]:
        """Counters and gauges for /metrics."""
        return {
            "tracked": len(self._due),
            "expired": len(self._expired),
            "scheduled": len(self._schedule),
            "ticks": self.ticks,
            "expired_total": self.expired_total,
            "recovered_total": self.recovered_total,
            "rescheduled_total": self.rescheduled_total,
            "last_tick": self.last_tick if self.last_tick is not None else 0.0,
            "last_lag": self.last_lag,
            "max_lag": self.max_lag,
        }
