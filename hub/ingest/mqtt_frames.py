"""Checks of whole MQTT 3.1.1 packets a client sent, before amqtt parses them (pure functions, no I/O).

amqtt parses a packet field by field straight off the socket. When it refuses a field (a wildcard in a
PUBLISH topic), it has read only part of the packet and takes the rest as the next packets: a payload
holding ``c0 00`` is answered as a PINGREQ. Here each packet is checked whole, so a malformed one ends the
connection, as MQTT 3.1.1 §4.8 requires, before amqtt reads a byte of it.
"""

from __future__ import annotations

__all__ = [
    "CONNACK_BAD_VERSION",
    "CONNECT",
    "Malformed",
    "check_client_packet",
    "check_connect",
    "connect_header",
    "remaining_length",
]

CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 3, 4, 5, 6, 7
SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT = 8, 10, 12, 14
# CONNACK, session present 0, return code 0x01: unacceptable protocol version (3.1.1 §3.2.2.3).
CONNACK_BAD_VERSION = b"\x20\x02\x00\x01"
# Packets of a fixed length and their fixed-header flags (3.1.1 §2.2.2).
_FIXED = {
    PUBACK: (2, 0),
    PUBREC: (2, 0),
    PUBREL: (2, 2),
    PUBCOMP: (2, 0),
    PINGREQ: (0, 0),
    DISCONNECT: (0, 0),
}
_NAMES = {
    2: "CONNACK",
    9: "SUBACK",
    11: "UNSUBACK",
    13: "PINGRESP",
    0: "reserved type 0",
    15: "reserved type 15",
}


class Malformed(ValueError):
    """A packet that breaks MQTT 3.1.1; the connection must be closed."""


def remaining_length(head: bytes | bytearray) -> int | None:
    """The Remaining Length encoded in ``head[1:]``, or None while more bytes of it are to come."""
    if len(head) == 2 and head[1] < 0x80:
        return head[1]  # packets under 128 bytes: most of a fleet's traffic
    value, multiplier = 0, 1
    for byte in head[1:]:
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value
        multiplier *= 128
    if len(head) >= 5:
        raise Malformed("Remaining Length longer than 4 bytes")
    return None


def _string(body: bytes, at: int, what: str) -> tuple[bytes, int]:
    """The length-prefixed field at ``at`` and the offset after it."""
    if at + 2 > len(body):
        raise Malformed(f"{what} cut short")
    end = at + 2 + int.from_bytes(body[at : at + 2], "big")
    if end > len(body):
        raise Malformed(f"{what} longer than the packet")
    return body[at + 2 : end], end


def _text(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"{what} is not UTF-8") from exc
    if "\0" in text:
        raise Malformed(f"{what} holds U+0000")
    return text


def connect_header(body: bytes) -> tuple[str, int, int]:
    """A CONNECT's protocol name, level and keep-alive; Malformed when they cannot be read."""
    raw, at = _string(body, 0, "protocol name")
    if at + 4 > len(body):
        raise Malformed("CONNECT cut short")
    name = raw.decode("utf-8", "replace")
    return name, body[at], int.from_bytes(body[at + 2 : at + 4], "big")


def check_connect(body: bytes) -> None:
    """A 3.1.1 CONNECT whose payload fields exactly fill the packet (§3.1.3)."""
    _, at = _string(body, 0, "protocol name")
    flags, at = body[at + 1], at + 4
    fields = ["client identifier"]
    if flags & 0x04:
        fields += ["will topic", "will message"]
    if flags & 0x80:
        fields.append("user name")
    if flags & 0x40:
        fields.append("password")
    for what in fields:
        raw, at = _string(body, at, what)
        if what in ("client identifier", "will topic", "user name"):
            _text(raw, what)
    if at != len(body):
        raise Malformed(f"{len(body) - at} bytes after the CONNECT payload")


def _check_publish(flags: int, body: bytes) -> None:
    # On every uplink: byte checks first, the UTF-8 decode once.
    qos = (flags >> 1) & 3
    if qos == 3:
        raise Malformed("PUBLISH with QoS 3")
    raw, at = _string(body, 0, "PUBLISH topic")
    if not raw:
        raise Malformed("PUBLISH with an empty topic")
    if b"+" in raw or b"#" in raw:
        raise Malformed(f"PUBLISH to the wildcard topic {raw[:100]!r}")
    _text(raw, "PUBLISH topic")
    if qos and (at + 2 > len(body) or body[at : at + 2] == b"\0\0"):
        raise Malformed("PUBLISH without a packet identifier")


def _check_filters(kind: int, body: bytes) -> None:
    if len(body) < 2 or body[:2] == b"\0\0":
        raise Malformed("packet identifier missing or 0")
    at, count = 2, 0
    while at < len(body):
        raw, at = _string(body, at, "topic filter")
        if not _text(raw, "topic filter"):
            raise Malformed("empty topic filter")
        if kind == SUBSCRIBE:
            if at >= len(body) or body[at] > 2:
                raise Malformed("SUBSCRIBE without a valid requested QoS")
            at += 1
        count += 1
    if not count:
        raise Malformed("no topic filter")


def check_client_packet(kind: int, flags: int, body: bytes) -> None:
    """Raise Malformed unless this is a well-formed packet a client may send after its CONNECT."""
    if kind == PUBLISH:
        _check_publish(flags, body)
    elif kind in _FIXED:
        length, expected = _FIXED[kind]
        if len(body) != length or flags != expected:
            raise Malformed(f"packet type {kind} with flags {flags} and {len(body)} bytes")
    elif kind in (SUBSCRIBE, UNSUBSCRIBE):
        if flags != 2:
            raise Malformed(f"packet type {kind} with flags {flags}")
        _check_filters(kind, body)
    elif kind == CONNECT:
        raise Malformed("a second CONNECT")
    else:
        raise Malformed(f"{_NAMES.get(kind, kind)} from a client")
