"""Shared helpers (no tests): a running API with a bootstrapped admin key, and a settable clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hub.app import Hub, create_app
from hub.config import Settings
from provisioning import apikeys
from tests.clocks import ManualClock as _ManualClock

__all__ = ["Api", "ManualClock", "running_api"]

T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)


class ManualClock(_ManualClock):
    """The shared manual clock, starting at this module's T0."""

    def __init__(self, now: dt.datetime = T0) -> None:
        super().__init__(now)


@dataclass
class Api:
    """A client of the running app, the hub behind it, and an admin key."""

    client: httpx.AsyncClient
    hub: Hub
    admin_key: str
    clock: ManualClock

    def auth(self, key: str | None = None) -> dict[str, str]:
        """Headers presenting ``key`` (the admin key by default)."""
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    async def key(self, role: str, *, places: list[str] | None = None, **extra: Any) -> str:
        """Create a key through the API and return its text."""
        body = {"name": f"{role}-{len(places or [])}", "role": role, "places": places or []} | extra
        response = await self.client.post("/api/v1/keys", json=body, headers=self.auth())
        assert response.status_code == 201, response.text
        text: str = response.json()["key"]
        return text


@asynccontextmanager
async def running_api(database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """Start the app's lifespan on ``database_url`` and bootstrap an admin key as the CLI would."""
    settings = Settings(
        database={"url": database_url},  # type: ignore[arg-type]
        mqtt={"port": 0},  # type: ignore[arg-type]
        coap={"enabled": False},  # type: ignore[arg-type]
        var_dir=tmp_path,
    )
    app = create_app(settings)
    clock = ManualClock()
    app.state.clock = clock
    async with app.router.lifespan_context(app):
        hub: Hub = app.state.hub
        async with hub.db.session() as session:
            _, admin = await apikeys.create_key(
                session, name="root", role="admin", actor="cli:test", channel="cli", clock=clock
            )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield Api(client, hub, admin, clock)
