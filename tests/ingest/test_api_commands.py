"""Commands down to a device over the embedded broker, answered by the device, seen through the API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from hub.app import build_hub, create_app
from provisioning.apikeys import create_key
from tests.fleet import build_street, enroll, hub_settings
from tests.ingest.test_mqtt_kit import Device, eventually


async def test_silence_a_smoke_alarm_and_get_the_answer(database_url: str, tmp_path: Path) -> None:
    settings = hub_settings(database_url, tmp_path)
    hub = build_hub(settings)
    await hub.start()
    device: Device | None = None
    try:
        street = await build_street(hub.db)
        smoke = await enroll(hub.db, "CMD-SM", "smoke", street.households[0])
        async with hub.db.session() as session:
            _key, operator = await create_key(session, name="ops", role="operator", actor="t", channel="cli")
        headers = {"Authorization": f"Bearer {operator}"}
        port = int(hub.listening["mqtt"].rsplit(":", 1)[1])
        device = Device("CMD-SM", port, smoke.secrets.mqtt_password)
        assert await device.connect()
        device.client.subscribe("devices/CMD-SM/cmd", qos=1)
        await eventually(lambda: device is not None and bool(device.subacks), "the SUBACK")
        transport = httpx.ASGITransport(app=create_app(settings, hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as http:
            url = "/api/v1/devices/CMD-SM/commands"
            unknown = await http.post(url, json={"name": "self_destruct"}, headers=headers)
            assert unknown.status_code == 422 and unknown.json()["field"] == "name"
            bad_param = await http.post(
                url, json={"name": "set_heartbeat", "params": {"interval_s": -1}}, headers=headers
            )
            assert bad_param.status_code == 422
            sent = await http.post(url, json={"name": "silence"}, headers=headers)
            assert sent.status_code == 202, sent.text
            cid = sent.json()["cid"]
            await eventually(
                lambda: device is not None and bool(device.received), "the command at the device"
            )
            topic, payload = device.received[0]
            command = json.loads(payload)
            assert topic == "devices/CMD-SM/cmd" and command == {"cmd": "silence", "args": {}, "cid": cid}
            answer = json.dumps({"cid": cid, "cmd": "silence", "ok": True}).encode()
            await device.publish("devices/CMD-SM/cmd/result", answer)

            async def done() -> dict[str, object]:
                for _ in range(200):
                    body: dict[str, object] = (await http.get(f"{url}/{cid}", headers=headers)).json()
                    if body["status"] != "sent":
                        return body
                    await asyncio.sleep(0.02)
                raise AssertionError("the result never arrived")

            final = await done()
            assert final["status"] == "ok" and final["result"]["ok"] is True  # type: ignore[index]
            missing = await http.get(f"{url}/999999", headers=headers)
            assert missing.status_code == 404
    finally:
        if device is not None:
            device.close()
        await hub.stop()
