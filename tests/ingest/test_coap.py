"""CoAP uplinks through a real aiocoap server and client: formats, refusals, limits, plain-mode tokens."""

from __future__ import annotations

from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers import codes

from drivers.base import MAX_PAYLOAD
from hub.config import CoapSettings
from hub.ingest.coap import CoapIngest
from provisioning.credentials import SecretBox
from tests.fleet import TEST_SECRET_KEY
from tests.ingest.test_coap_kit import CoapHub, client, coap_hub, coap_request, reading

__all__ = ["client", "coap_hub"]

GOOD = {"json": reading("smoke", "json", seq=1, battery=90, smoke=0.01)}


@pytest.mark.parametrize("fmt", ["json", "cbor", "binary", None])
async def test_good_uplink_in_each_format_is_stored(
    coap_hub: CoapHub, client: aiocoap.Context, fmt: str | None
) -> None:
    payload = reading(
        "smoke", fmt or "cbor", seq=7, ts=1_790_000_000, battery=77, smoke=0.02, temperature=21.0, rssi=-70
    )
    response = await coap_request(
        client, f"{coap_hub.base}/t/C-1", payload, fmt=fmt, query=[coap_hub.token("C-1")]
    )
    assert response.code == codes.CHANGED
    assert await coap_hub.samples("C-1", "battery") == [77]
    entry = coap_hub.service.directory.get("C-1")
    assert entry is not None
    status = coap_hub.service.states.get(entry.id)
    assert status is not None and status.online and status.metrics["battery"] == 77
    assert coap_hub.accepted("smoke") == 1


# Bad payloads of a smoke sensor (frames from tests/drivers/vectors/smoke.yaml), with the reason each gets.
BAD = [
    ("bad_json", b'{"seq": 1,', "json"),
    ("bad_cbor", bytes.fromhex("a2617601"), "cbor"),
    ("truncated", bytes.fromhex("f1010000002a6553f1000100"), "binary"),
    ("bad_version", bytes.fromhex("f1020000002a6553f1000100000c00d75747205e"), "binary"),
    ("out_of_range", b'{"battery": 101}', "json"),
    ("wrong_type", b'{"battery": "87"}', None),
]


@pytest.mark.parametrize(("reason", "payload", "fmt"), BAD, ids=[b[0] for b in BAD])
async def test_bad_payload_is_refused_with_its_reason_then_good_one_accepted(
    coap_hub: CoapHub, client: aiocoap.Context, reason: str, payload: bytes, fmt: str | None
) -> None:
    uri, token = f"{coap_hub.base}/t/C-1", [coap_hub.token("C-1")]
    response = await coap_request(client, uri, payload, fmt=fmt, query=token)
    assert response.code == codes.BAD_REQUEST
    assert response.payload.decode() == reason
    assert coap_hub.rejected(reason) == 1
    assert coap_hub.service.dead_letters.total == 1
    good = await coap_request(client, uri, GOOD["json"], query=token)
    assert good.code == codes.CHANGED
    assert await coap_hub.samples("C-1", "battery") == [90]


async def test_replayed_sequence_number_is_refused(coap_hub: CoapHub, client: aiocoap.Context) -> None:
    uri, token = f"{coap_hub.base}/t/C-1", [coap_hub.token("C-1")]
    first = reading("smoke", "json", seq=40, battery=60)
    assert (await coap_request(client, uri, first, query=token)).code == codes.CHANGED
    again = await coap_request(client, uri, first, query=token)
    assert again.code == codes.BAD_REQUEST and again.payload == b"replayed"
    assert coap_hub.rejected("replayed") == 1
    coap_hub.clock.now += 1
    later = reading("smoke", "json", seq=41, battery=59)
    assert (await coap_request(client, uri, later, query=token)).code == codes.CHANGED
    assert await coap_hub.samples("C-1", "battery") == [60, 59]


@pytest.mark.parametrize(
    ("serial", "query", "reason"),
    [
        ("NOPE-9", ["t=whatever"], "unknown_device"),
        ("C-1", ["t=wrong-token"], "bad_credentials"),
        ("C-1", [], "bad_credentials"),
        ("C-1", ["t=C-2's"], "bad_credentials"),
    ],
    ids=["unknown", "wrong-token", "no-token", "other-token"],
)
async def test_unauthenticated_uplinks_get_401(
    coap_hub: CoapHub, client: aiocoap.Context, serial: str, query: list[str], reason: str
) -> None:
    if query == ["t=C-2's"]:
        query = [coap_hub.token("C-2")]  # a real token, of another device
    response = await coap_request(client, f"{coap_hub.base}/t/{serial}", GOOD["json"], query=query)
    assert response.code == codes.UNAUTHORIZED and response.payload.decode() == reason
    assert coap_hub.rejected(reason) == 1
    assert await coap_hub.samples(serial, "battery") == []
    good = await coap_request(client, f"{coap_hub.base}/t/C-1", GOOD["json"], query=[coap_hub.token("C-1")])
    assert good.code == codes.CHANGED


async def test_revoked_and_rotated_credentials(coap_hub: CoapHub, client: aiocoap.Context) -> None:
    uri = f"{coap_hub.base}/t/C-3"
    old = [coap_hub.token("C-3")]
    assert (await coap_request(client, uri, GOOD["json"], query=old)).code == codes.CHANGED
    await coap_hub.rotate("C-3")
    await coap_hub.service.directory.refresh(coap_hub.service.directory.get("C-3").id)  # type: ignore[union-attr]
    stale = await coap_request(client, uri, reading("smoke", "json", seq=2), query=old)
    assert stale.code == codes.UNAUTHORIZED and stale.payload == b"bad_credentials"
    fresh = await coap_request(client, uri, reading("smoke", "json", seq=3), query=[coap_hub.token("C-3")])
    assert fresh.code == codes.CHANGED
    await coap_hub.revoke("C-3")
    await coap_hub.service.directory.refresh(coap_hub.service.directory.get("C-3").id)  # type: ignore[union-attr]
    revoked = await coap_request(client, uri, reading("smoke", "json", seq=4), query=[coap_hub.token("C-3")])
    assert revoked.code == codes.UNAUTHORIZED and revoked.payload == b"revoked"
    assert coap_hub.rejected("revoked") == 1


async def test_body_over_64_kib_gets_413_even_blockwise(coap_hub: CoapHub, client: aiocoap.Context) -> None:
    uri, token = f"{coap_hub.base}/t/C-1", [coap_hub.token("C-1")]
    big = b'{"battery": 50, "pad": "' + b"x" * MAX_PAYLOAD + b'"}'
    response = await coap_request(client, uri, big, query=token)
    assert response.code == codes.REQUEST_ENTITY_TOO_LARGE
    assert response.opt.size1 == MAX_PAYLOAD
    assert coap_hub.rejected("too_large") == 1
    # Under the limit, block-wise assembly still works (the decoder then judges the content).
    padded = b'{"battery": 50, "pad": "' + b"x" * 5000 + b'"}'
    below = await coap_request(client, uri, padded, query=token)
    assert below.code == codes.BAD_REQUEST and below.payload == b"unknown_field"
    assert (await coap_request(client, uri, GOOD["json"], query=token)).code == codes.CHANGED


async def test_other_paths_and_methods(coap_hub: CoapHub, client: aiocoap.Context) -> None:
    token = [coap_hub.token("C-1")]
    for path in ("/t", "/t/C-1/x", "/telemetry/C-1", "/"):
        response = await coap_request(client, coap_hub.base + path, GOOD["json"], query=token)
        assert response.code == codes.NOT_FOUND, path
    get = await coap_request(client, f"{coap_hub.base}/t/C-1", b"", fmt=None, query=token, code=aiocoap.GET)
    assert get.code == codes.METHOD_NOT_ALLOWED
    assert coap_hub.service.dead_letters.total == 0


async def test_plain_coap_is_refused_unless_allowed(
    coap_hub: CoapHub, client: aiocoap.Context, tmp_path: Path
) -> None:
    closed = CoapIngest(
        CoapSettings(port=0),
        coap_hub.service,
        SecretBox(TEST_SECRET_KEY),
        coap_hub.events,
        tmp_path / "closed",
        dtls=False,
    )
    await closed.start()
    try:
        ok, detail = await closed.health()
        assert ok and f"udp {closed.port}" in detail
        uri = f"coap://127.0.0.1:{closed.port}/t/C-1"
        response = await coap_request(client, uri, GOOD["json"], query=[coap_hub.token("C-1")])
        assert response.code == codes.UNAUTHORIZED and response.payload == b"bad_credentials"
        assert coap_hub.rejected("bad_credentials") == 1
    finally:
        await closed.stop()
    assert (await closed.health())[0] is False
