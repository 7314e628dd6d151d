"""HA and broker-list settings as an operator types them: refused with one line where they cannot work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hub.config import DatabaseSettings, load_settings
from hub.db import Database
from hub.db.migrate import current_revision, head_revision
from hub.errors import ConfigError
from tests.core.test_cli import assert_one_line_error, iothub
from tests.servers.postgres import PostgresDatabase

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/iothub"


def test_ha_with_sqlite_is_refused_with_one_line(tmp_path: Path) -> None:
    done = iothub("serve", cwd=tmp_path, env={"HUB_HA_ENABLED": "true", "HUB_MQTT_MODE": "external"})
    assert_one_line_error(done, "HUB_HA", "PostgreSQL", "SQLite")


def test_ha_with_the_embedded_broker_is_refused_with_one_line(tmp_path: Path) -> None:
    done = iothub("config", "show", cwd=tmp_path, env={"HUB_HA_ENABLED": "true", "HUB_DATABASE_URL": PG})
    assert_one_line_error(done, "HUB_HA", "HUB_MQTT_MODE=external")


def test_ha_settings_from_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "HUB_HA_ENABLED=true\nHUB_HA_NODE=hub-a\nHUB_HA_LEASE=6\nHUB_DATABASE_URL="
        + PG
        + "\nHUB_MQTT_MODE=external\nHUB_MQTT_SERVERS=nats-1:1883, nats-2:1883,[::1]:1884,emqx\n"
    )
    settings = load_settings(tmp_path / ".env")
    assert settings.ha.enabled and settings.ha.node == "hub-a" and settings.ha.lease == 6.0
    assert settings.mqtt.brokers == [("nats-1", 1883), ("nats-2", 1883), ("::1", 1884), ("emqx", 1883)]
    assert load_settings(None).mqtt.brokers == [("127.0.0.1", 1883)]  # no list: HUB_MQTT_HOST and _PORT


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("a:1883,,b:1883", "empty entry"),
        ("a:0", "port from 1 to 65535"),
        ("a:http", "port from 1 to 65535"),
        ("::1:1883", "[address]:port"),
        ("[::1]1883", "[address]:port"),
        ("a:1883,a:1883", "listed twice"),
    ],
)
def test_bad_broker_lists_name_the_setting(value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, mqtt={"servers": value})
    assert caught.value.setting == "HUB_MQTT_SERVERS" and needle in caught.value.message


def test_a_heartbeat_must_fit_the_lease_several_times() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, ha={"renew": 2.0, "lease": 5.0})
    assert "HUB_HA_RENEW" in caught.value.message


async def test_two_hubs_migrating_one_database_at_once_both_start() -> None:
    """Active and standby start together on an empty PostgreSQL: migrations run one after the other."""
    with PostgresDatabase("iothub_mig") as pg:
        dbs = [Database(DatabaseSettings(url=pg.asyncpg_url)) for _ in range(3)]
        try:
            await asyncio.gather(*(db.start() for db in dbs))
            async with dbs[0].engine.connect() as conn:
                assert await conn.run_sync(current_revision) == head_revision()
        finally:
            for db in dbs:
                await db.stop()
