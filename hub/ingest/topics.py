"""The MQTT topic scheme: every device topic sits under ``devices/{serial}/``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from drivers.base import Format

__all__ = [
    "PREFIX",
    "PROBE_PREFIX",
    "SUFFIX_FORMATS",
    "DeviceTopic",
    "TopicKind",
    "cmd_result_topic",
    "cmd_topic",
    "device_may_publish",
    "device_may_subscribe",
    "hub_subscriptions",
    "parse",
    "probe_topic",
    "status_topic",
    "up_topic",
    "valid_serial",
]

PREFIX = "devices"
# The hub's own topics for proving a shared subscription delivers (hub/ingest/mqtt_probe.py); outside
# ``devices/``, so no device ACL reaches them.
PROBE_PREFIX = "hub/probe"
TopicKind = Literal["up", "status", "cmd", "result"]
# devices/{serial}/up/{suffix} forces the format instead of sniffing it from the first byte.
SUFFIX_FORMATS: dict[str, Format] = {"json": "json", "cbor": "cbor", "bin": "binary"}
_FORBIDDEN = frozenset("/+#\0")


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """One parsed device topic: whose it is, what it carries, and the forced format of an uplink."""

    serial: str
    kind: TopicKind
    fmt: Format = "auto"


def valid_serial(serial: str) -> bool:
    """Whether ``serial`` can stand as one topic level (no separators, wildcards or NUL)."""
    return bool(serial) and not serial.startswith("$") and _FORBIDDEN.isdisjoint(serial)


def parse(topic: str) -> DeviceTopic | None:
    """The device topic ``topic`` names, or None when it is not one of the scheme."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != PREFIX or not valid_serial(parts[1]):
        return None
    serial, rest = parts[1], parts[2:]
    if rest == ["up"]:
        return DeviceTopic(serial, "up")
    if len(rest) == 2 and rest[0] == "up":
        fmt = SUFFIX_FORMATS.get(rest[1])
        return None if fmt is None else DeviceTopic(serial, "up", fmt)
    if rest == ["status"]:
        return DeviceTopic(serial, "status")
    if rest == ["cmd"]:
        return DeviceTopic(serial, "cmd")
    if rest == ["cmd", "result"]:
        return DeviceTopic(serial, "result")
    return None


def up_topic(serial: str, suffix: str | None = None) -> str:
    """Where a device publishes readings (``suffix`` json, cbor or bin forces the format)."""
    return f"{PREFIX}/{serial}/up" if suffix is None else f"{PREFIX}/{serial}/up/{suffix}"


def status_topic(serial: str) -> str:
    """Where a device publishes its retained "online" and its last will "offline"."""
    return f"{PREFIX}/{serial}/status"


def cmd_topic(serial: str) -> str:
    """Where the hub publishes commands to a device."""
    return f"{PREFIX}/{serial}/cmd"


def cmd_result_topic(serial: str) -> str:
    """Where a device answers a command."""
    return f"{PREFIX}/{serial}/cmd/result"


def probe_topic(client_id: str) -> str:
    """The topic a hub worker proves its shared subscription on: one level, its client id."""
    level = "".join("_" if char in "/+#\0" else char for char in client_id)
    return f"{PROBE_PREFIX}/{level}"


def device_may_publish(serial: str, topic: str) -> DeviceTopic | None:
    """The parsed topic if device ``serial`` may publish on it (its own up, status, cmd/result)."""
    parsed = parse(topic)
    if parsed is None or parsed.serial != serial or parsed.kind == "cmd":
        return None
    return parsed


def device_may_subscribe(serial: str, topic_filter: str) -> bool:
    """Whether device ``serial`` may subscribe to ``topic_filter``: only its own command topic, no wildcards."""
    return topic_filter == cmd_topic(serial)


def hub_subscriptions(shared_group: str | None = None) -> list[tuple[str, bool]]:
    """The filters the hub subscribes to on an external broker, each with whether it is shared.

    Only uplinks are split between hub workers: status and command results are few, and every worker
    needs the results of the commands it sent.
    """
    share = f"$share/{shared_group}/" if shared_group else ""
    return [
        (f"{share}{PREFIX}/+/up", bool(share)),
        (f"{share}{PREFIX}/+/up/+", bool(share)),
        (f"{PREFIX}/+/status", False),
        (f"{PREFIX}/+/cmd/result", False),
    ]
