"""A sensor case as the API shows it: where it is by code and names, which device, what happened in words."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers import DRIVERS
from hub.app import Hub, create_app
from hub.config import Settings
from provisioning.apikeys import create_key
from tests.alerts.test_cases_kit import Town, make_town
from tests.fleet import enroll

WHO = {"actor": "test", "channel": "system"}


@dataclass
class Api:
    """A started hub with the test town, an HTTP client and keys by name."""

    hub: Hub
    client: httpx.AsyncClient
    town: Town
    keys: dict[str, dict[str, str]]

    async def press(self, serial: str, household: int) -> dict[str, Any]:
        """Enroll a panic button, press it long through the pipeline; the case it opened, as listed."""
        await enroll(self.hub.db, serial, "panic_button", self.town.street.households[household])
        await self.hub.ingest.directory.load_all()
        await self.hub.evaluator.refresh_places()
        device = self.hub.ingest.directory.get(serial)
        assert device is not None
        payload = DRIVERS["panic_button"].encode({"seq": 1, "events": ["pressed_long"]})
        self.hub.ingest.pipeline.accept(device, payload, "mqtt")
        for _ in range(300):
            listed = (await self.client.get("/api/v1/cases", headers=self.keys["ops"])).json()
            mine = [c for c in listed if c["device_serial"] == serial]
            if mine:
                return dict(mine[0])
            await asyncio.sleep(0.02)
        raise AssertionError(f"no case for {serial}")


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        database={"url": database_url}, mqtt={"port": 0}, coap={"enabled": False}, var_dir=tmp_path
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        hub = app.state.hub
        town = await make_town(hub.db)
        keys: dict[str, dict[str, str]] = {}
        async with hub.db.session() as s:
            for name, role, places in (("ops", "operator", []), ("other", "responder", ["T-D-S-C-G-B-U02"])):
                _, text = await create_key(s, name=name, role=role, places=places, **WHO)
                keys[name] = {"Authorization": f"Bearer {text}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield Api(hub, client, town, keys)


async def test_a_case_says_where_which_device_and_what_in_words(api: Api) -> None:
    listed = await api.press("PB-1", 0)
    shown = (await api.client.get(f"/api/v1/cases/{listed['code']}", headers=api.keys["ops"])).json()
    home = api.town.street.households[0]
    for case in (listed, shown):
        assert case["place_code"] == home and case["place_name"] == "户 1"
        assert case["place_chain"] == [
            "district T-D",
            "street T-D-S",
            "community T-D-S-C",
            "grid T-D-S-C-G",
            "building T-D-S-C-G-B",
            "户 1",
        ]
        assert (case["device_serial"], case["device_kind"]) == ("PB-1", "panic_button")
        assert case["summary"] == "紧急按钮长按求助"
        assert case["summary_texts"] == {"zh-CN": "紧急按钮长按求助", "en": "Panic button held"}
        # The rule's id stays in the timeline (which rule acted), never in what the case says.
        assert "panic-long" not in str({k: v for k, v in case.items() if k not in ("timeline", "steps")})
    # A key of the other household may not see it: the refusal names the case, no id path.
    refused = await api.client.get(f"/api/v1/cases/{listed['code']}", headers=api.keys["other"])
    assert refused.status_code == 403 and listed["code"] in refused.json()["detail"]
    assert "/" not in refused.json()["detail"]
    # A transition answers with the same view.
    accepted = await api.client.post(f"/api/v1/cases/{listed['code']}/accept", headers=api.keys["ops"])
    assert accepted.status_code == 200 and accepted.json()["place_code"] == home


async def test_a_citizen_report_has_a_place_and_no_device(api: Api) -> None:
    report = {
        "source": "citizen",
        "category": "citizen_report",
        "place": "T-D-S-C-G-B",
        "description": "the stairwell light is out",
    }
    made = (await api.client.post("/api/v1/cases", json=report, headers=api.keys["ops"])).json()
    assert made["place_code"] == "T-D-S-C-G-B" and made["place_chain"][-1] == "building T-D-S-C-G-B"
    assert made["device_serial"] is None and made["device_kind"] is None
    assert made["summary"] == "the stairwell light is out"
