"""InfluxDB line-protocol encoder (the 1.x parser's escaping rules, checked against influxd 1.6)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from typing import TypeVar

from hub.errors import InvalidInput
from hub.telemetry.base import TelemetryPoint, Value

__all__ = ["LineEncoder", "encode_points"]

# 1.x keeps a backslash literally unless it precedes a special character, so backslashes in
# names and tag values are not doubled; a trailing one cannot be carried at all (it would escape
# the separator: influxdb-client's Point emits such broken lines, and silently drops NaN fields).
_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
# In string field values the parser does unescape both.
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_CACHE_MAX = 50_000
_K = TypeVar("_K", bound=Hashable)


def _check_name(text: str, what: str) -> None:
    """Refuse what line protocol cannot carry in a name or tag value."""
    if not text:
        raise InvalidInput(f"empty {what}", field=what)
    if "\n" in text or "\r" in text:
        raise InvalidInput(f"newline in {what} {text!r}", field=what)
    if text.endswith("\\"):
        # A trailing backslash would escape the separator that follows it.
        raise InvalidInput(f"trailing backslash in {what} {text!r}", field=what)


class LineEncoder:
    """Encode TelemetryPoints to line protocol, caching escaped names (they repeat a lot)."""

    __slots__ = ("_heads", "_keys", "_measurements", "_tag_values")

    def __init__(self) -> None:
        self._heads: dict[tuple[object, ...], str] = {}
        self._measurements: dict[str, str] = {}
        self._keys: dict[str, str] = {}
        self._tag_values: dict[str, str] = {}

    def _measurement(self, kind: str) -> str:
        out = self._measurements.get(kind)
        if out is None:
            _check_name(kind, "measurement")
            if kind.startswith("#"):
                raise InvalidInput(f"measurement {kind!r} would read as a comment", field="measurement")
            out = self._remember(self._measurements, kind, kind.translate(_MEASUREMENT))
        return out

    def _key(self, key: str) -> str:
        out = self._keys.get(key)
        if out is None:
            _check_name(key, "key")
            if key == "time":
                raise InvalidInput("'time' cannot be a tag or field key", field="key")
            out = self._remember(self._keys, key, key.translate(_KEY))
        return out

    def _tag_value(self, value: str) -> str:
        out = self._tag_values.get(value)
        if out is None:
            _check_name(value, "tag value")
            out = self._remember(self._tag_values, value, value.translate(_KEY))
        return out

    @staticmethod
    def _remember(cache: dict[_K, str], raw: _K, escaped: str) -> str:
        if len(cache) >= _CACHE_MAX:
            cache.clear()  # bounded memory beats a perfect hit rate for churned device ids
        cache[raw] = escaped
        return escaped

    def _field(self, key: str, value: Value) -> str:
        name = self._key(key)
        if value is True or value is False:
            return f"{name}={'true' if value else 'false'}"
        if isinstance(value, int):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise InvalidInput(f"integer {key}={value} outside int64", field=key)
            return f"{name}={value}i"
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidInput(f"non-finite float {key}={value}", field=key)
            return f"{name}={value!r}"
        if isinstance(value, str):
            return f'{name}="{value.translate(_STRING)}"'
        raise InvalidInput(f"unsupported field type {type(value).__name__} for {key}", field=key)

    def _series(self, point: TelemetryPoint) -> str:
        """Measurement and tags, escaped and sorted (InfluxDB's fast path), cached per series."""
        tags = point.tags
        key: tuple[object, ...] = (
            (point.kind, point.device_id, *tags.items()) if tags else (point.kind, point.device_id)
        )
        out = self._heads.get(key)
        if out is not None:
            return out
        parts = [self._measurement(point.kind)]
        merged = {k: v for k, v in tags.items() if v}  # 1.x refuses empty tag values
        merged["device_id"] = point.device_id
        for name in sorted(merged):
            parts.append(f",{self._key(name)}={self._tag_value(merged[name])}")
        return self._remember(self._heads, key, "".join(parts))

    def encode(self, point: TelemetryPoint) -> str:
        """One line (without the newline); raises InvalidInput for what InfluxDB would refuse."""
        fields = point.fields
        if not fields:
            raise InvalidInput("a point needs at least one field", field="fields")
        keys, out = self._keys, []
        # Floats and ints inline: they are nearly every field, and this runs once per field of every uplink.
        # "v - v == 0" holds for finite floats only (inf - inf and NaN - NaN are NaN).
        for key, value in fields.items():
            kind = type(value)
            if kind is float and value - value == 0.0:  # type: ignore[operator]
                out.append(f"{keys.get(key) or self._key(key)}={value!r}")
            elif kind is int and _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
                out.append(f"{keys.get(key) or self._key(key)}={value}i")
            else:
                out.append(self._field(key, value))
        ts = point.ts
        if not ts - ts == 0.0:
            raise InvalidInput(f"non-finite timestamp {ts}", field="ts")
        return f"{self._series(point)} {','.join(out)} {round(ts * 1_000_000_000)}"


def encode_points(points: Iterable[TelemetryPoint], encoder: LineEncoder | None = None) -> str:
    """Encode many points, one per line, with a trailing newline."""
    enc = encoder or LineEncoder()
    return "".join([enc.encode(p) + "\n" for p in points])
