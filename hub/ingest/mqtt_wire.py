"""MQTT 3.1.1 packets, as far as the hub's own client needs them: encoders and an incremental reader.

The reader turns every complete packet of a received chunk into a tuple in one pass over the buffer, with
no per-packet syscall or object beyond the tuple itself; paho reads one packet per socket readiness with
three ``recv`` calls, which cost as much as the hub's whole pipeline (docs/benchmarks.md, ingest).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from hub.errors import TransportError

__all__ = [
    "CONNACK",
    "DISCONNECT",
    "PINGREQ",
    "PINGRESP",
    "PUBACK",
    "PUBLISH",
    "SUBACK",
    "Packet",
    "PacketReader",
    "Publish",
    "connect_packet",
    "puback_packet",
    "publish_packet",
    "subscribe_packet",
]

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 1, 2, 3, 4, 8, 9
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14
PINGREQ_PACKET, DISCONNECT_PACKET = b"\xc0\x00", b"\xe0\x00"
# A broker may send anything up to 256 MB; the hub refuses device payloads far below that, so a
# larger packet can only be a broken stream.
MAX_PACKET = 1 << 20
CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
_U16 = struct.Struct("!H")
_PUBACK = struct.Struct("!BBH")

# (topic, payload, qos, packet id or 0, retain)
Publish = tuple[str, bytes, int, int, bool]
# (packet type, flags, body) for everything but PUBLISH
Packet = tuple[int, int, bytes]


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > 0xFFFF:
        raise TransportError(f"MQTT string of {len(raw)} bytes is too long")
    return _U16.pack(len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _remaining_length(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    username: str | None,
    password: str | None,
    clean_session: bool,
    keepalive: int,
) -> bytes:
    """CONNECT for protocol level 4 (3.1.1)."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    flags |= 0x02 if clean_session else 0
    body = _string("MQTT") + bytes((4, flags)) + _U16.pack(keepalive) + _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(CONNECT << 4, body)


def subscribe_packet(packet_id: int, filters: Sequence[tuple[str, int]]) -> bytes:
    """SUBSCRIBE for several filters, each with its maximum QoS."""
    body = _U16.pack(packet_id) + b"".join(_string(f) + bytes((qos,)) for f, qos in filters)
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def publish_packet(
    topic: str, payload: bytes, qos: int, packet_id: int = 0, *, retain: bool = False
) -> bytes:
    """PUBLISH at QoS 0 or 1 (``packet_id`` only for QoS 1)."""
    head = _string(topic) + (_U16.pack(packet_id) if qos else b"")
    return _packet((PUBLISH << 4) | (qos << 1) | int(retain), head + payload)


def puback_packet(packet_id: int) -> bytes:
    """PUBACK for one QoS 1 PUBLISH."""
    return _PUBACK.pack(PUBACK << 4, 2, packet_id)


class PacketReader:
    """Cuts a byte stream into packets; ``feed`` returns every packet completed by the chunk, in order."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Publish | Packet]:
        """Add received bytes; the packets they complete (PUBLISH as Publish, others as Packet)."""
        buf = self._buffer + data if self._buffer else data
        end, pos = len(buf), 0
        out: list[Publish | Packet] = []
        unpack_u16 = _U16.unpack_from
        while end - pos >= 2:
            first = buf[pos]
            # The remaining length: one byte for packets under 128 bytes, up to four.
            length, shift, i = 0, 0, pos + 1
            while True:
                if i >= end:
                    self._buffer = buf[pos:]
                    return out
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise TransportError("malformed MQTT remaining length")
            if length > MAX_PACKET:
                raise TransportError(f"MQTT packet of {length} bytes exceeds {MAX_PACKET}")
            stop = i + length
            if stop > end:
                break
            kind = first >> 4
            if kind == PUBLISH:
                if length < 2:
                    raise TransportError("PUBLISH without a topic")
                topic_end = i + 2 + unpack_u16(buf, i)[0]
                qos = (first >> 1) & 0x03
                if qos:
                    packet_id = unpack_u16(buf, topic_end)[0]
                    body = topic_end + 2
                else:
                    packet_id, body = 0, topic_end
                if body > stop or qos > 1:
                    # The hub subscribes at QoS 1 at most, so a broker never sends QoS 2.
                    raise TransportError(f"malformed PUBLISH (QoS {qos})")
                try:
                    topic = buf[i + 2 : topic_end].decode()
                except UnicodeDecodeError as exc:
                    raise TransportError("PUBLISH topic is not UTF-8") from exc
                out.append((topic, buf[body:stop], qos, packet_id, bool(first & 1)))
            else:
                out.append((kind, first & 0x0F, buf[i:stop]))
            pos = stop
        self._buffer = buf[pos:] if pos < end else b""
        return out
