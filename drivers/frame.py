"""The compact binary frame every driver shares: header, fixed body, CRC-16."""

from __future__ import annotations

import binascii
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from drivers.codec import MAGIC_RANGE, TS_RANGE, invalid
from hub.errors import DecodeError, InvalidInput

if TYPE_CHECKING:
    from drivers.base import Parts, Value

__all__ = ["FLAG_HEARTBEAT", "HEADER", "FrameLayout", "frame_ts", "require", "to_fixed"]

# magic, version, seq, ts (0 = no clock), flags (bit 0 = periodic heartbeat), event bits
HEADER = ">BBIIBB"
FLAG_HEARTBEAT = 0x01
_CRC_INIT = 0xFFFF  # CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, as binascii.crc_hqx computes it


class FrameLayout:
    """One kind's frame: magic byte, version, body layout; checks length and CRC."""

    __slots__ = ("_struct", "body", "magic", "size", "version")

    def __init__(self, magic: int, body: str, version: int = 1) -> None:
        if not MAGIC_RANGE[0] <= magic <= MAGIC_RANGE[1]:
            raise ValueError(f"magic 0x{magic:02x} outside the frame range")
        self.magic = magic
        self.version = version
        self.body = body
        self._struct = struct.Struct(HEADER + body)
        self.size = self._struct.size + 2

    def unpack(self, payload: bytes) -> tuple[Any, ...]:
        """Check magic, version, length and CRC; return header and body values (magic first)."""
        size = len(payload)
        if size < 2:
            raise DecodeError("truncated", f"frame of {size} bytes")
        if payload[0] != self.magic:
            raise DecodeError(
                "bad_magic", f"magic 0x{payload[0]:02x}, this kind's frames use 0x{self.magic:02x}"
            )
        if payload[1] != self.version:
            raise DecodeError(
                "bad_version", f"frame version {payload[1]} is not supported ({self.version} is)"
            )
        if size != self.size:
            reason = "truncated" if size < self.size else "bad_length"
            raise DecodeError(reason, f"frame of {size} bytes, version {self.version} has {self.size}")
        if binascii.crc_hqx(payload[:-2], _CRC_INIT) != (payload[-2] << 8 | payload[-1]):
            raise DecodeError("bad_crc", "CRC-16 mismatch")
        return self._struct.unpack_from(payload)

    def pack(self, parts: Parts, flags: int, events: int, *body: int) -> bytes:
        """Build a frame from reading parts, the driver's flag and event bytes and body values."""
        seq, ts, _metrics, names, heartbeat = parts
        if seq is None:
            raise InvalidInput("binary frames carry a sequence number", field="seq")
        if (not names) if heartbeat is None else heartbeat:
            flags |= FLAG_HEARTBEAT
        try:
            head = self._struct.pack(
                self.magic, self.version, seq, 0 if ts is None else round(ts), flags, events, *body
            )
        except struct.error as exc:
            raise invalid("out_of_range", "frame", f"a value does not fit the frame: {exc}") from exc
        return head + binascii.crc_hqx(head, _CRC_INIT).to_bytes(2, "big")


def frame_ts(raw: int) -> float | None:
    """A frame's timestamp: 0 means the device has no clock."""
    if raw == 0:
        return None
    if not TS_RANGE[0] <= raw <= TS_RANGE[1]:
        raise invalid("out_of_range", "ts", f"ts={raw} outside {TS_RANGE}")
    return float(raw)


def to_fixed(value: Value, scale: int) -> int:
    """A value as a fixed-point integer with the given scale (10 = one decimal)."""
    return round(float(value) * scale)


def require(metrics: Mapping[str, Value], names: Sequence[str]) -> list[Value]:
    """The metrics a frame must carry, in order; a missing one is the caller's mistake."""
    missing = [name for name in names if name not in metrics]
    if missing:
        raise InvalidInput(f"a binary frame needs {', '.join(missing)}", field=missing[0])
    return [metrics[name] for name in names]
