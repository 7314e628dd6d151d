"""What each simulated device says: realistic values per kind, and the scenarios that break the routine."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from drivers import DRIVERS
from drivers.base import Format

__all__ = ["SCENARIOS", "Scenario", "SimDevice", "next_uplink", "scenario_uplinks"]

Scenario = Literal["fire", "stops_moving", "sos", "silent", "malformed", "replay", "panic"]
SCENARIOS: tuple[Scenario, ...] = ("fire", "stops_moving", "sos", "silent", "malformed", "replay", "panic")
# Centre of the demo street (a Shanghai street); body-cams walk around it.
HOME = (31.2304, 121.4737)


@dataclass
class SimDevice:
    """One simulated device: its identity, secrets and a little state that evolves."""

    serial: str
    kind: str
    password: str
    household: str | None = None
    building: str | None = None
    transport: str = "mqtt"
    # CoAP devices: the device side of their OSCORE context (IssuedSecrets.oscore.for_device()).
    oscore: dict[str, str] | None = None
    # The payload format the device speaks: NB-IoT devices send CBOR or compact binary frames.
    fmt: Format = "json"
    # The next sequence number: 0 after every boot, as docs/devices.md asks of firmware.
    seq: int = 0
    battery: float = 100.0
    silent: bool = False
    moving: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def next_seq(self) -> int:
        """The sequence number of the next uplink (wraps like a 32-bit device counter)."""
        seq = self.seq
        self.seq = (seq + 1) % (1 << 32)
        return seq


def _routine_fields(dev: SimDevice, rng: random.Random) -> dict[str, Any]:
    dev.battery = max(0.0, dev.battery - rng.random() * 0.01)
    battery = round(dev.battery)
    rssi = rng.randint(-105, -65)
    if dev.kind == "smoke":
        return {
            "smoke": round(rng.uniform(0.0, 0.05), 3),
            "temperature": round(rng.uniform(18, 27), 1),
            "battery": battery,
            "rssi": rssi,
            "alarm": False,
        }
    if dev.kind == "door":
        # A heartbeat always says whether the door is open (the binary frame has no way to leave it out).
        fields: dict[str, Any] = {
            "open": bool(dev.extra.get("open", False)),
            "battery": battery,
            "rssi": rssi,
            "voltage": round(2.4 + battery / 100 * 0.8, 2),
        }
        if dev.moving and rng.random() < 0.3:
            is_open = not dev.extra.get("open", False)
            dev.extra["open"] = is_open
            fields.update(open=is_open, events=["opened" if is_open else "closed"])
        return fields
    if dev.kind == "bodycam":
        lat, lon = dev.extra.get("pos", HOME)
        lat, lon = lat + rng.uniform(-2e-4, 2e-4), lon + rng.uniform(-2e-4, 2e-4)
        dev.extra["pos"] = (lat, lon)
        return {
            "lat": round(lat, 6),
            "lon": round(lon, 6),
            "accuracy": round(rng.uniform(3, 15), 1),
            "battery": battery,
            "rssi": rssi,
            "moving": True,
            "recording": False,
            "storage": min(100, int(dev.extra.setdefault("storage", rng.randint(5, 40)))),
        }
    if dev.kind == "panic_button":
        return {
            "battery": battery,
            "rssi": rssi,
            "moving": dev.moving and rng.random() < 0.5,
            "variant": "pendant",
        }
    raise ValueError(f"no traffic model for kind {dev.kind!r}")


def next_uplink(dev: SimDevice, rng: random.Random, now: float, fmt: Format | None = None) -> bytes:
    """One routine uplink of ``dev`` in ``fmt`` (default: the device's own format)."""
    fields = _routine_fields(dev, rng)
    fields["seq"] = dev.next_seq()
    fields["ts"] = round(now)
    if dev.kind == "panic_button" and not dev.moving:
        fields["moving"] = False
    return DRIVERS[dev.kind].encode(fields, fmt or dev.fmt)


def scenario_uplinks(scenario: Scenario, dev: SimDevice, rng: random.Random, now: float) -> list[bytes]:
    """The frames a scenario makes ``dev`` send (empty for 'silent', which stops it instead)."""
    driver = DRIVERS[dev.kind]
    if scenario == "silent":
        dev.silent = True
        return []
    if scenario == "stops_moving":
        dev.moving = False
        return []
    if scenario == "malformed":
        return [b'{"seq": ', b"\xf1\x01garbage", b"[1, 2, 3]"]
    if scenario == "replay":
        frame = next_uplink(dev, rng, now)
        return [frame, frame]
    events: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {
        ("fire", "smoke"): ({"alarm": True, "smoke": round(rng.uniform(1.5, 4.0), 2)}, ["alarm"]),
        ("sos", "bodycam"): ({"recording": True}, ["sos", "recording_started"]),
        ("panic", "panic_button"): ({}, ["pressed_long"]),
    }
    chosen = events.get((scenario, dev.kind))
    if chosen is None:
        raise ValueError(f"scenario {scenario!r} does not apply to a {dev.kind}")
    extra, names = chosen
    fields = {**_routine_fields(dev, rng), **extra, "events": names, "seq": dev.next_seq(), "ts": round(now)}
    return [driver.encode(fields, dev.fmt)]
