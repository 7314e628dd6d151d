"""A rebooted CoAP device over plain CoAP, DTLS-PSK (libcoap's client) and OSCORE (aiocoap's): heard at once.

A CoAP retransmission (the same message id) is still taken once: aiocoap's message layer answers it from
its cache, so the pipeline never sees it twice.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiocoap
from aiocoap.numbers import codes

from tests.ingest.test_coap_dtls import CLIENT, post, psk
from tests.ingest.test_coap_kit import CF, CoapHub, client, coap_hub, coap_request, oscore_client_dir, reading

__all__ = ["client", "coap_hub"]


def smoke(seq: int, *, alarm: bool = False, battery: int = 80, fmt: str = "json") -> bytes:
    """A smoke detector uplink."""
    events = ["alarm"] if alarm else []
    return reading("smoke", fmt, seq=seq, battery=battery, alarm=alarm, events=events)


async def alarms_stored(hub: CoapHub, serial: str) -> int:
    """How many stored readings of ``serial`` had the detector sounding."""
    return sum(1 for value in await hub.samples(serial, "alarm") if value)


async def test_a_rebooted_plain_coap_device_is_heard(coap_hub: CoapHub, client: aiocoap.Context) -> None:
    """No session on plain CoAP: the boot frame (seq 0) begins a new one, even after 50 frames."""
    uri, token = f"{coap_hub.base}/t/C-1", [coap_hub.token("C-1")]
    for seq in range(51):
        coap_hub.clock.now += 1
        assert (await coap_request(client, uri, smoke(seq), query=token)).code == codes.CHANGED
    for seq, alarm in ((0, False), (1, True), (2, False)):
        coap_hub.clock.now += 1
        answer = await coap_request(client, uri, smoke(seq, alarm=alarm, battery=100), query=token)
        assert answer.code == codes.CHANGED, answer.payload
    assert coap_hub.rejected("replayed") == 0 and await alarms_stored(coap_hub, "C-1") == 1


async def test_a_coap_retransmission_is_taken_once(coap_hub: CoapHub) -> None:
    """The same confirmable datagram (same message id and token) twice: answered twice, taken once."""
    request = aiocoap.Message(code=aiocoap.POST, payload=smoke(3, alarm=True))
    request.mtype, request.mid, request.token = aiocoap.CON, 4242, b"\x01\x02"
    request.opt.uri_path = ("t", "C-1")
    request.opt.uri_query = (coap_hub.token("C-1"),)
    request.opt.content_format = CF["json"]
    datagram = request.encode()
    assert coap_hub.coap.port is not None
    loop = asyncio.get_running_loop()
    answers = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", coap_hub.coap.port))
        for _ in range(2):
            await loop.sock_sendall(sock, datagram)
            answers.append(aiocoap.Message.decode(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10)))
    assert [(a.mid, a.code) for a in answers] == [(4242, codes.CHANGED)] * 2
    assert coap_hub.accepted("smoke") == 1 and coap_hub.rejected("replayed") == 0
    assert await alarms_stored(coap_hub, "C-1") == 1


async def test_a_new_dtls_handshake_begins_a_session(coap_hub: CoapHub) -> None:
    """libcoap's client shakes hands anew each run: a device counting from 1 again after a reboot is heard."""
    key = await psk(coap_hub, "C-1")
    for seq in range(11):
        coap_hub.clock.now += 1
        assert (await post(coap_hub, "C-1", key, "C-1", smoke(seq))).strip() == ""
    coap_hub.clock.now += 1
    printed = await post(coap_hub, "C-1", key, "C-1", smoke(1, alarm=True, battery=100))
    assert printed.strip() == "", f"{CLIENT}: {printed}"
    assert coap_hub.rejected("replayed") == 0 and await alarms_stored(coap_hub, "C-1") == 1


async def oscore_device(hub: CoapHub, folder: Path) -> aiocoap.Context:
    """A client speaking OSCORE with C-1's current keys, its sequence state kept in ``folder``."""
    context = await aiocoap.Context.create_client_context()
    basedir = folder if (folder / "secret.json").exists() else oscore_client_dir(folder, hub.secrets["C-1"])
    context.client_credentials.load_from_dict({f"{hub.base}/*": {"oscore": {"basedir": f"{basedir}/"}}})
    return context


async def power_off(device: aiocoap.Context) -> None:
    """Stop the client and write its OSCORE sequence state, as a device does before it sleeps or reboots."""
    await device.shutdown()
    for security in device.client_credentials.values():
        if getattr(security, "lockfile", None) is not None:
            security._destroy()


async def test_a_rebooted_oscore_device_is_heard(coap_hub: CoapHub, tmp_path: Path) -> None:
    """The OSCORE sequence survives the reboot (it must), the payload counter starts again at 0."""
    uri = f"{coap_hub.base}/t/C-1"
    for boot, seqs in enumerate((range(21), range(3))):
        device = await oscore_device(coap_hub, tmp_path / "C-1")
        try:
            for seq in seqs:
                coap_hub.clock.now += 1
                # A new battery: the boot frame differs from the last boot's (the same one is a repeat).
                payload = smoke(seq, alarm=boot == 1 and seq == 1, battery=80 + 20 * boot, fmt="cbor")
                answer = await coap_request(device, uri, payload, fmt="cbor")
                assert answer.code == codes.CHANGED, (boot, seq, answer.payload)
        finally:
            await power_off(device)
    assert coap_hub.rejected("replayed") == 0 and await alarms_stored(coap_hub, "C-1") == 1


async def test_a_new_oscore_context_begins_a_session(coap_hub: CoapHub, tmp_path: Path) -> None:
    """New keys are a new context on both sides: the device's counter may start anywhere (its seq 0 lost)."""
    uri = f"{coap_hub.base}/t/C-1"
    device = await oscore_device(coap_hub, tmp_path / "g1")
    try:
        for seq in range(11):
            coap_hub.clock.now += 1
            assert (await coap_request(device, uri, smoke(seq), fmt="json")).code == codes.CHANGED
    finally:
        await power_off(device)
    await coap_hub.rotate("C-1")
    await asyncio.sleep(0)  # the ingest service refreshes its directory entry in a task
    device = await oscore_device(coap_hub, tmp_path / "g2")
    try:
        coap_hub.clock.now += 1
        answer = await coap_request(device, uri, smoke(1, alarm=True, battery=100), fmt="json")
        assert answer.code == codes.CHANGED, answer.payload
    finally:
        await power_off(device)
    assert coap_hub.rejected("replayed") == 0 and await alarms_stored(coap_hub, "C-1") == 1
