"""The live event stream, read by a real HTTP client from a real server (uvicorn on an ephemeral port)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import uvicorn

from drivers import DRIVERS
from hub.app import build_hub, create_app
from hub.netutil import bind_tcp
from provisioning.apikeys import create_key
from tests.fleet import build_street, enroll, hub_settings


async def test_readings_stream_to_the_command_center(tmp_path: Path) -> None:
    settings = hub_settings(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}", tmp_path)
    hub = build_hub(settings)
    await hub.start()
    sock = bind_tcp("127.0.0.1", 0, fallback=False, setting="test")
    server = uvicorn.Server(uvicorn.Config(create_app(settings, hub), log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="test-uvicorn")
    try:
        street = await build_street(hub.db)
        await enroll(hub.db, "LIVE-1", "door", street.households[0])
        async with hub.db.session() as session:
            _k, operator = await create_key(session, name="ops", role="operator", actor="t", channel="cli")
            _k, tech = await create_key(
                session, name="tech", role="technician", places=[street.building], actor="t", channel="cli"
            )
        # The socket listens already: requests wait in its backlog until uvicorn accepts them.
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            assert (
                await http.get("/api/v1/events", headers={"Authorization": f"Bearer {tech}"})
            ).status_code == 403
            async with http.stream(
                "GET", "/api/v1/events", headers={"Authorization": f"Bearer {operator}"}
            ) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                assert (await anext(lines)).startswith("retry:")
                device = await hub.ingest.directory.lookup("LIVE-1")
                assert device is not None
                payload = DRIVERS["door"].encode(
                    {"seq": 1, "battery": 77, "open": True, "events": ["opened"]}
                )
                hub.ingest.pipeline.accept(device, payload, "mqtt")
                data = None
                async for line in lines:
                    if line.startswith("data: "):
                        data = json.loads(line.removeprefix("data: "))
                        break
                assert data is not None
                assert (
                    data["device"] == "LIVE-1"
                    and data["events"] == ["opened"]
                    and data["metrics"]["battery"] == 77
                )
    finally:
        server.should_exit = True
        await serving
        await hub.stop()
