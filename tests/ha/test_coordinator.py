"""Two hubs in one process on one PostgreSQL: roles, what a standby runs and serves, takeover, fencing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from drivers import DRIVERS
from hub.app import Hub, build_hub
from hub.config import DatabaseSettings
from hub.db import Database
from hub.ha import Step
from hub.ingest.mqtt_client import ExternalMqtt
from tests.alerts.test_cases_kit import make_town
from tests.fleet import enroll, hub_settings
from tests.ingest.test_mqtt_kit import eventually
from tests.servers.mosquitto import MosquittoServer
from tests.servers.postgres import PostgresDatabase


@pytest.fixture
def pg() -> Iterator[PostgresDatabase]:
    """A throw-away, migrated PostgreSQL database (HA is PostgreSQL only)."""
    with PostgresDatabase("iothub_ha") as database:
        yield database


def ha_hub(pg: PostgresDatabase, root: Path, node: str, mosquitto: MosquittoServer) -> tuple[Hub, list[str]]:
    """A hub with HA on (a short lease) whose fence records instead of exiting."""
    settings = hub_settings(
        pg.asyncpg_url,
        root / node,
        mqtt={"mode": "external", "servers": f"127.0.0.1:{mosquitto.port}", "client_id": "ha-in-process"},
        ha={"enabled": True, "node": node, "lease": 1.0, "renew": 0.3, "poll": 0.1},
    )
    hub = build_hub(settings)
    lost: list[str] = []
    assert hub.ha is not None
    hub.ha.on_lost = lost.append
    return hub, lost


@asynccontextmanager
async def pair(
    pg: PostgresDatabase, root: Path, mosquitto: MosquittoServer
) -> AsyncIterator[list[tuple[Hub, list[str]]]]:
    """Hubs a and b started; a first, so it holds the lease."""
    hubs = [ha_hub(pg, root, node, mosquitto) for node in ("a", "b")]
    try:
        await hubs[0][0].start()
        await eventually(lambda: hubs[0][0].ha.role == "active", "a active", 15)  # type: ignore[union-attr]
        await hubs[1][0].start()
        yield hubs
    finally:
        for hub, _lost in reversed(hubs):
            await hub.stop()


async def test_one_consumes_the_other_serves_and_takes_over(
    pg: PostgresDatabase, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    async with pair(pg, tmp_path, mosquitto) as hubs:
        (a, a_lost), (b, _b_lost) = hubs
        assert a.ha is not None and b.ha is not None
        town = await make_town(a.db)
        await enroll(a.db, "HA-SMK", "smoke", town.street.households[0])
        # The standby: ready, says who holds the lease, runs no consumer.
        health = {h.name: h for h in await b.health()}
        assert all(h.ok for h in health.values())
        assert health["rules"].detail == health["mqtt"].detail == "standby: runs on the lease holder"
        status = await b.ha.status()
        assert status["role"] == "standby" and status["holder"] == {
            "node": "a",
            "since": status["holder"]["since"],
        }  # type: ignore[index]
        assert not b.consumes and b.evaluator.engine.deadman.ticks == 0
        assert isinstance(b.mqtt, ExternalMqtt) and not b.mqtt.connected.is_set()
        # The active's state reaches the standby's API through the database.
        await a.ingest.directory.load_all()
        entry = a.ingest.directory.get("HA-SMK")
        assert entry is not None
        a.ingest.pipeline.accept(entry, DRIVERS["smoke"].encode({"seq": 7, "battery": 55}), "mqtt")
        await a.ingest.states.flush()
        stored = await b.ingest.states.read(entry.id)
        assert stored is not None and stored.metrics["battery"] == 55 and stored.seq.highest == 7
        # The active's lock session ends (its process died, or PostgreSQL ended it): a fences, b takes over.
        died = time.monotonic()
        a.ha.lease._conn.terminate()
        await eventually(lambda: bool(a_lost), "the old active's fence", 10)
        assert not a.ha.fence() and a.outbox.fence is not None and not a.outbox.fence()
        await eventually(lambda: b.ha.role == "active", "the standby's takeover", 20)  # type: ignore[union-attr]
        assert time.monotonic() - died >= b.ha.fence_wait  # it waited out the old active's lease
        await eventually(b.mqtt.connected.is_set, "the resumed MQTT session", 15)
        assert list(b.ha.step_seconds) == ["reload", "rules, outbox, cases", "replay journal", "transports"]
        assert b.ingest.states.get(entry.id) is not None  # reloaded at the takeover
        assert (await b.ha.status())["holder"]["node"] == "b"  # type: ignore[index]


async def test_a_fenced_reader_takes_nothing(
    pg: PostgresDatabase, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """Past the lease, the MQTT reader handles no message (it stays unacknowledged for the next active)."""
    hub, _lost = ha_hub(pg, tmp_path, "solo", mosquitto)
    assert isinstance(hub.mqtt, ExternalMqtt)
    hub.mqtt.fence = lambda: False
    before = hub.ingest.dead_letters.total
    assert hub.mqtt.take("devices/X/up", b"{}", False) is False
    waiting = asyncio.ensure_future(hub.mqtt.take_later("devices/X/up", b"{}", False))
    await asyncio.sleep(0.1)
    assert not waiting.done() and hub.mqtt.received == 0 and hub.ingest.dead_letters.total == before
    waiting.cancel()


async def test_a_failed_takeover_gives_the_lease_up(
    pg: PostgresDatabase, tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    db = Database(DatabaseSettings(url=pg.asyncpg_url))
    await db.start()
    await db.stop()
    hub, lost = ha_hub(pg, tmp_path, "x", mosquitto)
    assert hub.ha is not None

    async def broken() -> None:
        raise RuntimeError("registry unreadable")

    hub.ha.steps.insert(0, Step("reload", broken))
    await hub.start()
    try:
        await eventually(lambda: bool(lost), "the lease given up", 15)
        assert "takeover step 'reload' failed" in lost[0] and hub.ha.role == "taking over"
    finally:
        await hub.stop()
