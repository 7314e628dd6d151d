"""The hub's MQTT 3.1.1 packet reader and encoders, byte for byte."""

from __future__ import annotations

import pytest

from hub.errors import TransportError
from hub.ingest import mqtt_wire as wire


def _publishes() -> bytes:
    return b"".join(
        [
            wire.publish_packet("devices/A/up", b'{"seq":1}', 0),
            wire.publish_packet("devices/B/up/bin", bytes(range(256)) * 2, 1, 7),  # two-byte length
            wire.publish_packet("devices/C/status", b"offline", 1, 65535, retain=True),
            wire.puback_packet(9),
            b"\xd0\x00",  # PINGRESP
        ]
    )


EXPECTED = [
    ("devices/A/up", b'{"seq":1}', 0, 0, False),
    ("devices/B/up/bin", bytes(range(256)) * 2, 1, 7, False),
    ("devices/C/status", b"offline", 1, 65535, True),
    (wire.PUBACK, 0, b"\x00\x09"),
    (wire.PINGRESP, 0, b""),
]


def test_a_stream_cut_at_every_byte_gives_the_same_packets() -> None:
    """Wherever TCP splits the stream, every packet comes out once, whole and in order."""
    stream = _publishes()
    assert wire.PacketReader().feed(stream) == EXPECTED
    for cut in range(1, len(stream)):
        reader = wire.PacketReader()
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == EXPECTED
    reader = wire.PacketReader()
    one_by_one = [p for i in range(len(stream)) for p in reader.feed(stream[i : i + 1])]
    assert one_by_one == EXPECTED


def test_encoders_write_what_the_specification_says() -> None:
    """CONNECT, SUBSCRIBE and PUBLISH against hand-assembled MQTT 3.1.1 bytes."""
    connect = wire.connect_packet("hub", username="u", password="p", clean_session=False, keepalive=30)
    assert connect == b"\x10\x15\x00\x04MQTT\x04\xc0\x00\x1e\x00\x03hub\x00\x01u\x00\x01p"
    anonymous = wire.connect_packet("x", username=None, password=None, clean_session=True, keepalive=0)
    assert anonymous == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x00\x00\x01x"
    assert wire.subscribe_packet(1, [("a/+", 1)]) == b"\x82\x08\x00\x01\x00\x03a/+\x01"
    assert wire.publish_packet("t", b"x", 1, 2) == b"\x32\x06\x00\x01t\x00\x02x"
    big = wire.publish_packet("t", b"x" * 20_000, 0)
    assert big[:4] == bytes((0x30, 0xA3, 0x9C, 0x01))  # 20,003 as a three-byte remaining length


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "remaining length"),
        (b"\x30\x80\x80\x80\x01", "exceeds"),  # 2 MiB
        (b"\x34\x05\x00\x01t\x00\x01", "QoS 2"),
        (b"\x30\x03\x00\x05t", "malformed PUBLISH"),  # topic longer than the packet
        (b"\x30\x04\x00\x02\xff\xfe", "UTF-8"),
        (b"\x30\x01\x00", "without a topic"),
    ],
)
def test_a_broken_stream_is_refused_with_a_reason(stream: bytes, why: str) -> None:
    """A corrupt stream cannot be resynchronised: the reader says what is wrong and the connection ends."""
    with pytest.raises(TransportError, match=why):
        wire.PacketReader().feed(stream)
