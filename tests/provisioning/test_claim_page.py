"""The claim page a box's QR code opens: the form, a good claim, and every refusal, in plain HTML (no script)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from hub.app import Hub, build_hub, create_app
from hub.db.devices import Device
from provisioning.apikeys import create_key
from provisioning.devices import Actor, get_device_by_serial
from provisioning.enroll import DeviceSpec, preregister_batch
from tests.fleet import TEST_SECRET_KEY, Street, build_street, hub_settings


@pytest.fixture
async def page(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Hub, Street, dict[str, str]]]:
    """A started hub with a street, a factory batch of two smoke sensors, and keys."""
    settings = hub_settings(database_url, tmp_path)
    hub = build_hub(settings)
    await hub.start()
    try:
        street = await build_street(hub.db)
        async with hub.db.session() as session:
            codes = dict(
                await preregister_batch(
                    session,
                    [DeviceSpec(serial="BOX-1", kind="smoke"), DeviceSpec(serial="BOX-2", kind="smoke")],
                    batch="b1",
                    secret_key=TEST_SECRET_KEY,
                    actor=Actor("factory", "cli"),
                )
            )
            _k, tech = await create_key(
                session, name="tech", role="technician", places=[street.building], actor="t", channel="cli"
            )
            _k, ops = await create_key(session, name="ops", role="operator", actor="t", channel="cli")
        transport = httpx.ASGITransport(app=create_app(settings, hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:
            yield http, hub, street, {"tech": tech, "ops": ops, **codes}
    finally:
        await hub.stop()


async def _state(hub: Hub, serial: str) -> str:
    async with hub.db.session() as session:
        device: Device | None = await get_device_by_serial(session, serial)
    assert device is not None
    return device.state


async def test_the_form_carries_serial_and_code(
    page: tuple[httpx.AsyncClient, Hub, Street, dict[str, str]],
) -> None:
    http, _hub, _street, keys = page
    form = await http.get(f"/claim/BOX-1?c={keys['BOX-1']}")
    assert form.status_code == 200 and form.headers["content-type"].startswith("text/html")
    assert '<code id="serial">BOX-1</code>' in form.text
    assert f'name="c" value="{keys["BOX-1"]}"' in form.text
    assert form.headers["cache-control"] == "no-store"
    assert "<script" not in form.text.lower()
    hostile = await http.get("/claim/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E?c=%22%3E%3Cb%3E")
    assert hostile.status_code == 200
    assert "<img src=x" not in hostile.text and "&lt;img src=x onerror=alert(1)&gt;" in hostile.text
    assert '"><b>' not in hostile.text


async def test_a_good_claim_then_every_refusal(
    page: tuple[httpx.AsyncClient, Hub, Street, dict[str, str]],
) -> None:
    http, hub, street, keys = page
    household = street.households[0]
    good = {"c": keys["BOX-1"], "household": household, "position": "厨房", "key": keys["tech"]}
    wrong_code = await http.post("/claim/BOX-1", data={**good, "c": "WRNG-CODE-0000"})
    unknown = await http.post("/claim/NO-SUCH", data=good)
    assert wrong_code.status_code == unknown.status_code == 401
    # The same words for a wrong code and an unknown serial: the page tells nothing about which serials exist.
    assert _note(wrong_code.text) == _note(unknown.text)
    assert (await http.post("/claim/BOX-1", data={**good, "key": keys["ops"]})).status_code == 403
    assert (await http.post("/claim/BOX-1", data={**good, "key": "hub_bad_key"})).status_code == 401
    missing = await http.post("/claim/BOX-1", data={**good, "household": ""})
    assert missing.status_code == 422 and "household" in missing.text
    assert (await http.post("/claim/BOX-1", content=b"c=" + b"x" * 9000)).status_code == 413
    assert await _state(hub, "BOX-1") == "registered"
    claimed = await http.post("/claim/BOX-1", data=good)
    assert claimed.status_code == 201, claimed.text
    assert "已认领 Claimed: smoke" in claimed.text and "password" in claimed.text
    assert await _state(hub, "BOX-1") == "claimed"
    again = await http.post("/claim/BOX-1", data=good)
    assert again.status_code == 401


def _note(page_html: str) -> str:
    start = page_html.index('role="status">') + len('role="status">')
    return page_html[start : page_html.index("</p>", start)]
