"""DTLS-PSK uplinks from an independent client (libcoap's coap-client-openssl) to the hub's aiocoap server."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from hub.ingest.coap_dtls import client_key_exchange_identity
from tests.ingest.test_coap_kit import CoapHub, coap_hub, reading

__all__ = ["coap_hub"]

CLIENT = "coap-client-openssl"


@pytest.fixture(autouse=True, scope="module")
def _client_installed() -> None:
    """The independent DTLS client must be there: scripts/test.sh installs it; its absence fails, never skips."""
    if shutil.which(CLIENT) is None:
        pytest.fail(f"{CLIENT} is missing: install Debian's libcoap3-bin (scripts/test.sh does)")


async def post(
    hub: CoapHub, identity: str, key: bytes, serial: str, payload: bytes, cf: int = 50, wait: int = 5
) -> str:
    """POST over DTLS with libcoap; returns what it printed (response code line or errors)."""
    uri = f"coaps://127.0.0.1:{hub.coap.dtls_port}/t/{serial}"
    args = ["-m", "post", "-B", str(wait), "-u", identity, "-k", key, "-t", str(cf), "-f", "-", uri]
    proc = await asyncio.create_subprocess_exec(
        CLIENT,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(payload), 30)
    return (out + err).decode(errors="replace")


async def psk(hub: CoapHub, serial: str) -> bytes:
    """The device's PSK, re-issued until libcoap can take it on its command line (no NUL byte)."""
    key = hub.secrets[serial].psk
    while key is None or b"\0" in key:
        key = (await hub.rotate(serial)).psk
    return key


async def test_right_key_is_accepted_and_stored(coap_hub: CoapHub) -> None:
    key = await psk(coap_hub, "C-1")
    printed = await post(coap_hub, "C-1", key, "C-1", reading("smoke", "json", seq=1, battery=66))
    assert printed.strip() == ""  # 2.04 with no payload: libcoap prints nothing
    assert await coap_hub.samples("C-1", "battery") == [66]
    cbor = reading("smoke", "cbor", seq=2, battery=65)
    coap_hub.clock.now += 1
    assert (await post(coap_hub, "C-1", key, "C-1", cbor, cf=60)).strip() == ""
    assert await coap_hub.samples("C-1", "battery") == [66, 65]
    ok, detail = await coap_hub.coap.health()
    assert ok and f"dtls {coap_hub.coap.dtls_port}" in detail
    # libcoap ends with close_notify, which frees the session slot.
    for _ in range(200):
        if "(0 sessions)" in (await coap_hub.coap.health())[1]:
            break
        await asyncio.sleep(0.01)
    assert "(0 sessions)" in (await coap_hub.coap.health())[1]


async def test_wrong_key_fails_the_handshake_and_stores_nothing(coap_hub: CoapHub) -> None:
    key = await psk(coap_hub, "C-1")
    wrong = bytes((b ^ 0x5A) or 1 for b in key)
    printed = await post(coap_hub, "C-1", wrong, "C-1", reading("smoke", "json", seq=1, battery=11), wait=1)
    assert "2.04" not in printed and printed.strip() != ""
    assert await coap_hub.samples("C-1", "battery") == []
    # The same device with its right key right after.
    assert (
        await post(coap_hub, "C-1", key, "C-1", reading("smoke", "json", seq=2, battery=12))
    ).strip() == ""
    assert await coap_hub.samples("C-1", "battery") == [12]


async def test_unknown_identity_is_refused_and_counted(coap_hub: CoapHub) -> None:
    key = await psk(coap_hub, "C-1")
    printed = await post(coap_hub, "NOPE-1", key, "NOPE-1", reading("smoke", "json", battery=1))
    assert "cannot send" in printed or "alert" in printed
    assert coap_hub.rejected("bad_credentials") == 1
    assert await coap_hub.samples("NOPE-1", "battery") == []


async def test_identity_must_match_the_path(coap_hub: CoapHub) -> None:
    key = await psk(coap_hub, "C-2")
    printed = await post(coap_hub, "C-2", key, "C-1", reading("smoke", "json", battery=40))
    assert "4.03" in printed and "acl" in printed
    assert coap_hub.rejected("acl") == 1
    assert await coap_hub.samples("C-1", "battery") == []


async def test_bad_payload_over_dtls_gets_its_reason(coap_hub: CoapHub) -> None:
    key = await psk(coap_hub, "C-1")
    printed = await post(coap_hub, "C-1", key, "C-1", b'{"battery": 101}')
    assert "4.00" in printed and "out_of_range" in printed
    assert coap_hub.rejected("out_of_range") == 1
    assert (await post(coap_hub, "C-1", key, "C-1", reading("smoke", "json", battery=3))).strip() == ""


async def test_rotated_and_revoked_keys_stop_working(coap_hub: CoapHub) -> None:
    old = await psk(coap_hub, "C-3")
    assert (
        await post(coap_hub, "C-3", old, "C-3", reading("smoke", "json", seq=1, battery=30))
    ).strip() == ""
    await coap_hub.rotate("C-3")
    new = await psk(coap_hub, "C-3")
    coap_hub.clock.now += 1
    printed = await post(coap_hub, "C-3", old, "C-3", reading("smoke", "json", seq=2, battery=31), wait=1)
    assert "2.04" not in printed and printed.strip() != ""
    assert (
        await post(coap_hub, "C-3", new, "C-3", reading("smoke", "json", seq=3, battery=32))
    ).strip() == ""
    assert await coap_hub.samples("C-3", "battery") == [30, 32]
    await coap_hub.revoke("C-3")
    coap_hub.clock.now += 1
    printed = await post(coap_hub, "C-3", new, "C-3", reading("smoke", "json", seq=4, battery=33))
    assert printed.strip() != ""
    assert await coap_hub.samples("C-3", "battery") == [30, 32]


def test_client_key_exchange_identity_is_found_in_a_flight() -> None:
    identity = b"SN-42"
    body = bytes([16]) + (2 + len(identity)).to_bytes(3, "big") + b"\0\1" + b"\0\0\0"
    body += (2 + len(identity)).to_bytes(3, "big") + len(identity).to_bytes(2, "big") + identity
    record = bytes([22, 0xFE, 0xFD, 0, 0]) + (3).to_bytes(6, "big") + len(body).to_bytes(2, "big") + body
    change_cipher = bytes([20, 0xFE, 0xFD, 0, 0]) + (4).to_bytes(6, "big") + b"\0\1\1"
    assert client_key_exchange_identity(record + change_cipher) == identity
    assert client_key_exchange_identity(change_cipher) is None
    encrypted = bytes([22, 0xFE, 0xFD, 0, 1]) + record[5:]
    assert client_key_exchange_identity(encrypted) is None
    assert client_key_exchange_identity(record[:-2]) is None
