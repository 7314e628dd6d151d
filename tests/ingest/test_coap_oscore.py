"""OSCORE uplinks: aiocoap's own client with the device's context; wrong keys, another device, replays."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiocoap
import pytest
from aiocoap import oscore
from aiocoap.numbers import codes

from tests.ingest.test_coap_kit import CF, CoapHub, coap_hub, coap_request, oscore_client_dir, reading

__all__ = ["coap_hub"]


@pytest.fixture
async def device_client(coap_hub: CoapHub, tmp_path: Path) -> AsyncIterator[aiocoap.Context]:
    """A client speaking OSCORE to the hub with C-1's keys."""
    context = await aiocoap.Context.create_client_context()
    basedir = oscore_client_dir(tmp_path / "device-C-1", coap_hub.secrets["C-1"])
    context.client_credentials.load_from_dict({f"{coap_hub.base}/*": {"oscore": {"basedir": f"{basedir}/"}}})
    try:
        yield context
    finally:
        await context.shutdown()


async def test_right_keys_are_accepted_and_stored(coap_hub: CoapHub, device_client: aiocoap.Context) -> None:
    uri = f"{coap_hub.base}/t/C-1"
    for seq, battery in ((1, 71), (2, 70)):
        coap_hub.clock.now += 1
        response = await coap_request(
            device_client, uri, reading("smoke", "cbor", seq=seq, battery=battery), fmt="cbor"
        )
        assert response.code == codes.CHANGED
    assert await coap_hub.samples("C-1", "battery") == [71, 70]
    # Sequence state lives in the hub's var dir, one folder per device and key generation.
    assert (coap_hub.coap.state_dir / "oscore" / "C-1" / "g1" / "sequence.json").exists()
    assert not list((coap_hub.coap.state_dir / "oscore").rglob("secret*"))
    bad = await coap_request(device_client, uri, b'{"battery": -1}')
    assert bad.code == codes.BAD_REQUEST and bad.payload == b"out_of_range"


async def test_wrong_keys_are_refused(coap_hub: CoapHub, tmp_path: Path) -> None:
    context = await aiocoap.Context.create_client_context()
    try:
        wrong = oscore_client_dir(tmp_path / "wrong", coap_hub.secrets["C-1"], secret_hex="00" * 16)
        context.client_credentials.load_from_dict(
            {f"{coap_hub.base}/*": {"oscore": {"basedir": f"{wrong}/"}}}
        )
        request = aiocoap.Message(
            code=aiocoap.POST, uri=f"{coap_hub.base}/t/C-1", payload=reading("smoke", "json", battery=5)
        )
        with pytest.raises(aiocoap.error.Error):
            # The 4.01 comes back unprotected, which aiocoap's client reports as an error.
            await asyncio.wait_for(context.request(request).response, 20)
    finally:
        await context.shutdown()
    assert coap_hub.rejected("bad_credentials") >= 1
    assert await coap_hub.samples("C-1", "battery") == []


async def test_another_devices_context_cannot_post_here(coap_hub: CoapHub, tmp_path: Path) -> None:
    context = await aiocoap.Context.create_client_context()
    try:
        basedir = oscore_client_dir(tmp_path / "device-C-2", coap_hub.secrets["C-2"])
        context.client_credentials.load_from_dict(
            {f"{coap_hub.base}/*": {"oscore": {"basedir": f"{basedir}/"}}}
        )
        response = await coap_request(context, f"{coap_hub.base}/t/C-1", reading("smoke", "json", battery=5))
        assert response.code == codes.FORBIDDEN and response.payload == b"acl"
        door = await coap_request(context, f"{coap_hub.base}/t/C-2", reading("door", "json", battery=44))
        assert door.code == codes.CHANGED
    finally:
        await context.shutdown()
    assert coap_hub.rejected("acl") == 1
    assert await coap_hub.samples("C-2", "battery") == [44]


async def test_replayed_oscore_message_is_refused(coap_hub: CoapHub, tmp_path: Path) -> None:
    basedir = oscore_client_dir(tmp_path / "raw-C-1", coap_hub.secrets["C-1"])
    device = oscore.FilesystemSecurityContext(str(basedir))
    try:
        inner = aiocoap.Message(
            code=aiocoap.POST, uri_path=("t", "C-1"), payload=reading("smoke", "json", battery=21)
        )
        inner.opt.content_format = CF["json"]
        protected, _ = device.protect(inner)
    finally:
        device._destroy()
    answers = []
    for mid in (1, 2):
        # A new message id each time, so the message layer's duplicate detection does not answer for OSCORE.
        protected.mtype, protected.mid, protected.token = aiocoap.CON, mid, bytes([mid])
        answers.append(await _exchange(coap_hub.coap.port, protected.encode()))
    first, second = answers
    assert first.code == codes.CHANGED  # the outer code of a protected 2.04
    assert second.code == codes.UNAUTHORIZED and second.payload == b"Replay detected"
    assert coap_hub.rejected("replayed") == 1
    assert await coap_hub.samples("C-1", "battery") == [21]


async def _exchange(port: int | None, datagram: bytes) -> aiocoap.Message:
    """Send one datagram from a fresh socket and read the answer."""
    assert port is not None
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_sendto(sock, datagram, ("127.0.0.1", port))
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), 10)
    return aiocoap.Message.decode(data)


async def test_rotation_gives_a_fresh_context(
    coap_hub: CoapHub, device_client: aiocoap.Context, tmp_path: Path
) -> None:
    uri = f"{coap_hub.base}/t/C-1"
    assert (
        await coap_request(device_client, uri, reading("smoke", "json", seq=1, battery=9))
    ).code == codes.CHANGED
    issued = await coap_hub.rotate("C-1")
    await asyncio.sleep(0)  # the ingest service refreshes its directory entry in a task
    context = await aiocoap.Context.create_client_context()
    try:
        basedir = oscore_client_dir(tmp_path / "rotated", issued)
        context.client_credentials.load_from_dict(
            {f"{coap_hub.base}/*": {"oscore": {"basedir": f"{basedir}/"}}}
        )
        coap_hub.clock.now += 1
        fresh = await coap_request(context, uri, reading("smoke", "json", seq=2, battery=8))
        assert fresh.code == codes.CHANGED
    finally:
        await context.shutdown()
    folders = sorted(p.name for p in (coap_hub.coap.state_dir / "oscore" / "C-1").iterdir())
    assert folders == ["g2"]
    assert json.loads((coap_hub.coap.state_dir / "oscore" / "C-1" / "g2" / "sequence.json").read_text())
    assert await coap_hub.samples("C-1", "battery") == [9, 8]
