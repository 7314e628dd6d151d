"""Decodes per second of every driver and format, against json.loads of the same JSON object."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from drivers import ALL
from drivers.base import Driver

__all__ = ["main", "sample_fields"]

SAMPLES: dict[str, dict[str, Any]] = {
    "smoke": {"smoke": 0.012, "temperature": 21.5, "battery": 87, "rssi": -71, "alarm": False},
    "door": {"open": True, "locked": False, "voltage": 2.9, "rssi": -85, "events": ["opened"]},
    "bodycam": {
        "lat": 31.2304,
        "lon": 121.4737,
        "accuracy": 4.5,
        "battery": 60,
        "storage": 42,
        "rssi": -90,
        "recording": True,
        "moving": True,
    },
    "panic_button": {"battery": 95, "rssi": -101, "variant": "pendant", "moving": False, "heartbeat": True},
}


def sample_fields(driver: Driver) -> dict[str, Any]:
    """A typical uplink of this kind, as normalized fields."""
    return {"seq": 42, "ts": 1_700_000_000, **SAMPLES[driver.kind]}


def _rates(
    func: Callable[[], object], reference: Callable[[], object], seconds: float
) -> tuple[float, float]:
    """Calls per second of func and of reference, batches interleaved so load spikes hit both alike."""
    batch, best, best_ref = 2000, 0.0, 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(batch):
            func()
        middle = time.perf_counter()
        for _ in range(batch):
            reference()
        end = time.perf_counter()
        best = max(best, batch / (middle - start))
        best_ref = max(best_ref, batch / (end - middle))
    return best, best_ref


def main() -> None:
    """Print a table of decodes/s, µs per decode and the ratio to json.loads."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per measurement")
    args = parser.parse_args()
    print(
        f"{'kind':<13} {'format':<7} {'bytes':>5} {'decodes/s':>11} {'µs':>6} {'json.loads/s':>13} {'ratio':>6}"
    )
    for driver in ALL:
        fields = sample_fields(driver)
        text = driver.encode(fields, "json")
        for fmt in ("json", "cbor", "binary"):
            payload = driver.encode(fields, fmt)  # type: ignore[arg-type]
            rate, reference = _rates(
                lambda payload=payload, d=driver: d.decode(payload),  # type: ignore[misc]
                lambda text=text: json.loads(text),  # type: ignore[misc]
                args.seconds,
            )
            print(
                f"{driver.kind:<13} {fmt:<7} {len(payload):>5} {rate:>11,.0f} {1e6 / rate:>6.2f}"
                f" {reference:>13,.0f} {rate / reference:>6.2f}"
            )


if __name__ == "__main__":
    main()
