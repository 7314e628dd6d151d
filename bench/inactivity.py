"""Deadman tracking of 1 M devices: memory, cost per uplink, detection lag; against a plain dict per uplink."""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from typing import Literal

from alerts.deadman import DeadmanTracker

__all__ = ["main"]

T0 = 1_700_000_000.0
SPAN = 3600 * 2.5  # a door: hourly heartbeat, 2.5 missed beats


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _armed(schedule: Literal["wheel", "heap"], keys: list[int], last_seen: list[float]) -> DeadmanTracker:
    tracker = DeadmanTracker(schedule)
    tracker.start(T0)
    for key, seen in zip(keys, last_seen, strict=True):
        tracker.arm(key, seen + SPAN)
    return tracker


def _memory(schedule: Literal["wheel", "heap"] | None, keys: list[int], last_seen: list[float]) -> float:
    """MB allocated by an armed tracker (None: by a plain dict of last_seen, the reference)."""
    gc.collect()
    tracemalloc.start()
    if schedule is None:
        held: object = {key: seen + SPAN for key, seen in zip(keys, last_seen, strict=True)}
    else:
        held = _armed(schedule, keys, last_seen)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return size / 1e6


def _per_uplink(tracker: DeadmanTracker, order: list[int], now: float) -> tuple[float, float]:
    """ns per tracker.touch and per plain dict store, for the same keys in the same order."""
    deadline = now + SPAN
    touch = tracker.touch
    start = time.perf_counter()
    for key in order:
        touch(key, deadline)
    tracked = (time.perf_counter() - start) / len(order) * 1e9
    plain: dict[int, float] = dict.fromkeys(order, 0.0)
    start = time.perf_counter()
    for key in order:
        plain[key] = deadline
    reference = (time.perf_counter() - start) / len(order) * 1e9
    return tracked, reference


def _lag(
    tracker: DeadmanTracker,
    last_seen: list[float],
    rng: random.Random,
    window: float,
    tick: float,
    silent: float,
) -> tuple[list[float], list[float], int]:
    """Run ``window`` seconds of ticks; most devices due in it send first, ``silent`` of them do not."""
    uplinks: list[tuple[float, int]] = []
    for key, seen in enumerate(last_seen):
        deadline = seen + SPAN
        if deadline <= T0 + window and rng.random() >= silent:
            uplinks.append((max(T0, deadline - rng.uniform(0, 600)), key))
    uplinks.sort()
    lags: list[float] = []
    tick_ms: list[float] = []
    position, now = 0, T0
    while now < T0 + window:
        now += tick
        while position < len(uplinks) and uplinks[position][0] <= now:
            at, key = uplinks[position]
            tracker.touch(key, at + SPAN)
            position += 1
        start = time.perf_counter()
        expired = tracker.expire(now)
        tick_ms.append((time.perf_counter() - start) * 1e3)
        lags.extend(now - deadline for _, deadline in expired)
    return lags, tick_ms, len(uplinks)


def main() -> None:
    """Print memory, ns per uplink, tick cost and detection lag for the wheel and the heap."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--tick", type=float, default=0.5, help="seconds between ticks")
    parser.add_argument("--window", type=float, default=900.0, help="simulated seconds of ticking")
    parser.add_argument("--silent", type=float, default=0.1, help="share of due devices that stay silent")
    args = parser.parse_args()
    rng = random.Random(1)
    keys = list(range(args.devices))
    # Heard at random times during the last span, so deadlines spread evenly over the next one.
    last_seen = [T0 - rng.uniform(0, SPAN) for _ in keys]
    order = keys[:]
    rng.shuffle(order)
    reference_mb = _memory(None, keys, last_seen)
    print(f"devices {args.devices:,}  span {SPAN:.0f} s  tick {args.tick} s  window {args.window:.0f} s")
    print(f"reference: dict of deadlines {reference_mb:.1f} MB")
    header = f"{'schedule':<8} {'MB':>7} {'×dict':>6} {'ns/uplink':>10} {'dict ns':>8} {'ratio':>6}"
    print(
        header
        + f" {'tick p99 ms':>12} {'tick max ms':>12} {'expired':>8} {'lag p50 s':>10} {'lag p99 s':>10}"
    )
    for schedule in ("wheel", "heap"):
        mb = _memory(schedule, keys, last_seen)
        tracker = _armed(schedule, keys, last_seen)
        tracker.expire(T0)
        ns, ref_ns = _per_uplink(tracker, order[: len(order) // 2], T0)
        tracker = _armed(schedule, keys, last_seen)
        lags, tick_ms, uplinks = _lag(
            tracker, last_seen, random.Random(2), args.window, args.tick, args.silent
        )
        print(
            f"{schedule:<8} {mb:>7.1f} {mb / reference_mb:>6.2f} {ns:>10.0f} {ref_ns:>8.0f} {ns / ref_ns:>6.2f}"
            f" {_percentile(tick_ms, 0.99):>12.2f} {max(tick_ms):>12.2f} {len(lags):>8,}"
            f" {_percentile(lags, 0.5):>10.3f} {_percentile(lags, 0.99):>10.3f}"
        )
        assert tracker.rescheduled_total >= 0 and uplinks > 0
        del tracker
        gc.collect()


if __name__ == "__main__":
    main()
