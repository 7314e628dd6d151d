"""Rule evaluation cost per uplink with 50 rules, against decoding alone and a no-op hook."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from alerts.alert import Alert
from alerts.engine import RuleEngine
from alerts.rules import parse_rules
from alerts.ruleset import RuleSet
from drivers import DRIVERS
from drivers.base import DecodeMeta, Reading
from hub.ingest.directory import DeviceEntry

__all__ = ["fifty_rules", "main"]

T0 = 1_700_000_000.0
PLACES = 200
FIELDS = {"seq": 1, "smoke": 0.012, "temperature": 21.5, "battery": 87, "rssi": -71, "alarm": False}
_LEVELS = {"temperature": (45, 40), "smoke": (0.5, 0.3), "rssi": (-120, -115), "battery": (15, 20)}


def fifty_rules() -> list[dict[str, Any]]:
    """50 rules that all apply to a smoke detector: thresholds, place overrides, events, deadman, offline."""
    out: list[dict[str, Any]] = []
    metrics = list(_LEVELS)
    for index in range(36):
        metric = metrics[index % len(metrics)]
        value, clear = _LEVELS[metric]
        op = "<" if metric in ("rssi", "battery") else ">"
        rule = {"name": f"t{index}", "type": "threshold", "kind": "smoke", "metric": metric, "op": op}
        rule |= {
            "value": value,
            "clear": clear,
            "for_s": 60 * (index % 3),
            "severity": "minor",
            "category": "fault",
        }
        if index % 4 == 0:
            rule["place"] = f"/1/{index % 7}/"  # place-scoped overrides make the per-place views differ
        out.append(rule)
    for index, event in enumerate(("alarm", "tamper", "fault", "test_button") * 3):
        rule = {"name": f"e{index}", "type": "event", "kind": "smoke", "event": event, "severity": "info"}
        out.append(rule | {"category": "test"})
    out.append({"name": "silent", "type": "inactivity", "kind": "smoke", "factor": 2, "severity": "major"})
    out.append({"name": "offline", "type": "offline", "kind": "smoke", "severity": "major", "for_s": 300})
    return out


def _entry(device_id: int) -> DeviceEntry:
    return DeviceEntry(
        id=device_id,
        serial=f"SMK-{device_id:06d}",
        kind="smoke",
        driver=DRIVERS["smoke"],
        place_id=device_id % PLACES,
        responder_id=None,
        state="active",
        transport="mqtt",
        mqtt_hash=None,
        revoked=False,
        generation=1,
        test_until=None,
    )


def _per_call(func: Callable[[int], object], calls: int, rounds: int = 3) -> float:
    """Best µs per call over ``rounds`` runs of ``calls`` calls."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(calls):
            func(i)
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main() -> None:
    """Print µs per uplink for decode, a no-op hook, the 50-rule engine, and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    driver = DRIVERS["smoke"]
    payload = driver.encode(FIELDS, "json")
    meta = DecodeMeta("json")
    reading = driver.decode(payload, meta)
    alerts: list[Alert] = []
    rules = RuleSet.build(DRIVERS, parse_rules(fifty_rules()), defaults=False)
    places = {p: f"/1/{p % 7}/{p}/" for p in range(PLACES)}
    engine = RuleEngine(rules, alerts.append, places=places)
    devices = [_entry(i) for i in range(args.devices)]
    count = len(rules.for_device("smoke", places[0], devices[0].serial).thresholds)
    n = len(devices)

    def decode(i: int) -> Reading:
        return driver.decode(payload, meta)

    def noop(device: DeviceEntry, reading: Reading, now: float) -> None:
        return None

    def no_op_hook(i: int) -> None:
        noop(devices[i % n], reading, T0 + i)

    def evaluate(i: int) -> None:
        engine.on_reading(devices[i % n], reading, T0 + i * 0.01)

    def decode_and_evaluate(i: int) -> None:
        engine.on_reading(devices[i % n], driver.decode(payload, meta), T0 + i * 0.01)

    for i in range(n):  # warm the per-place views and arm every deadline
        evaluate(i)
    results = {
        "decode (json)": _per_call(decode, args.calls),
        "no-op hook": _per_call(no_op_hook, args.calls),
        "engine, 50 rules": _per_call(evaluate, args.calls),
        "decode + engine": _per_call(decode_and_evaluate, args.calls),
    }
    print(
        f"{len(rules)} rules, {count} thresholds per device, {n:,} devices over {PLACES} places, {len(payload)} B"
    )
    print(f"{'step':<18} {'µs/uplink':>10} {'uplinks/s':>11} {'× decode':>9}")
    for name, micros in results.items():
        ratio = micros / results["decode (json)"]
        print(f"{name:<18} {micros:>10.2f} {1e6 / micros:>11,.0f} {ratio:>9.2f}")
    assert alerts == [], "the benchmark's readings trigger nothing: it measures the quiet path"
    engine.tick(T0 + 10_000_000)
    print(f"after a long silence one tick fired {len(alerts):,} deadman alerts for {n:,} devices")


if __name__ == "__main__":
    main()
