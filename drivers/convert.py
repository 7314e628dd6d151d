"""Small converters shared by drivers, and the one vocabulary of normalized metric names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Protocol, TypeVar

from drivers.base import CommandSpec, MetricSpec, ParamSpec, Text
from hub.errors import DecodeError, InvalidInput

__all__ = [
    "SET_HEARTBEAT",
    "VOCABULARY",
    "BitNames",
    "battery_from_mv",
    "by_name",
    "check_reserved",
    "mv_from_battery",
    "vocabulary",
]

VOCABULARY: Mapping[str, MetricSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            MetricSpec(
                "battery", "%", "int", 0, 100, description="state of charge", text=Text("电量", "battery")
            ),
            MetricSpec(
                "voltage",
                "V",
                "float",
                0.0,
                5.0,
                description="battery voltage",
                text=Text("电池电压", "battery voltage"),
            ),
            MetricSpec(
                "rssi",
                "dBm",
                "int",
                -140,
                0,
                description="received signal (RSRP on NB-IoT/LTE)",
                text=Text("信号强度", "signal strength"),
            ),
            MetricSpec(
                "temperature",
                "°C",
                "float",
                -40.0,
                85.0,
                description="air temperature at the device",
                text=Text("温度", "temperature"),
            ),
            MetricSpec(
                "lat", "°", "float", -90.0, 90.0, description="WGS84 latitude", text=Text("纬度", "latitude")
            ),
            MetricSpec(
                "lon",
                "°",
                "float",
                -180.0,
                180.0,
                description="WGS84 longitude",
                text=Text("经度", "longitude"),
            ),
            MetricSpec(
                "accuracy",
                "m",
                "float",
                0.0,
                6553.5,
                description="horizontal accuracy, 1 sigma",
                text=Text("定位精度", "position accuracy"),
            ),
            MetricSpec(
                "moving",
                "",
                "bool",
                description="the wearer is moving (accelerometer)",
                text=Text("佩戴者在活动", "wearer moving"),
            ),
        )
    }
)


def vocabulary(*names: str) -> dict[str, MetricSpec]:
    """Pick shared metric specs by name, so every driver uses the same units and ranges."""
    return {name: VOCABULARY[name] for name in names}


class BitNames:
    """Names of the bits of one byte, with the answer for every byte value computed once."""

    __slots__ = ("_bits", "_table", "names")

    def __init__(self, *names: str) -> None:
        if len(names) > 8:
            raise ValueError("a byte holds at most 8 names")
        self.names = names
        self._bits = {name: 1 << i for i, name in enumerate(names)}
        known = (1 << len(names)) - 1
        self._table: tuple[tuple[str, ...] | None, ...] = tuple(
            None if mask & ~known else tuple(n for i, n in enumerate(names) if mask >> i & 1)
            for mask in range(256)
        )

    def decode(self, mask: int) -> tuple[str, ...]:
        """Names of the set bits; a set bit without a name is reason "reserved_bits"."""
        names = self._table[mask]
        if names is None:
            raise DecodeError("reserved_bits", f"reserved bits set in 0x{mask:02x}")
        return names

    def encode(self, names: Iterable[str]) -> int:
        """The byte with the named bits set."""
        mask = 0
        for name in names:
            bit = self._bits.get(name)
            if bit is None:
                raise InvalidInput(f"{name!r} has no bit in this frame", field="events")
            mask |= bit
        return mask


def check_reserved(flags: int, known: int) -> None:
    """Refuse a flag byte with bits this version does not define (a newer firmware, or noise)."""
    if flags & ~known:
        raise DecodeError("reserved_bits", f"reserved flag bits set in 0x{flags:02x}")


def battery_from_mv(mv: int, empty_mv: int, full_mv: int) -> int:
    """Linear state of charge between the empty and full voltages, clamped to 0-100 %."""
    percent = round((mv - empty_mv) * 100 / (full_mv - empty_mv))
    return 0 if percent < 0 else min(percent, 100)


def mv_from_battery(percent: float, empty_mv: int, full_mv: int) -> int:
    """The voltage in mV that battery_from_mv maps back to this percentage."""
    return round(empty_mv + percent * (full_mv - empty_mv) / 100)


# The heartbeat command every battery device understands, with the same bounds for all of them.
SET_HEARTBEAT = CommandSpec(
    "set_heartbeat",
    {"interval_s": ParamSpec("int", "seconds between heartbeats", 300, 86_400)},
    "change the heartbeat interval",
)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


Spec = TypeVar("Spec", bound=_Named)


def by_name(*specs: Spec) -> dict[str, Spec]:
    """A name → spec table, in declaration order."""
    return {spec.name: spec for spec in specs}
