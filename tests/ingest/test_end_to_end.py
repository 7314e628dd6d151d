"""The whole hub as `iothub serve` builds it: MQTT device → auth → pipeline → InfluxDB; a panic press → an urgent case."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from alerts.escalation import list_steps
from drivers import DRIVERS
from hub.app import build_hub
from hub.config import Settings
from hub.db import Database
from hub.db.cases import Case
from tests.fleet import TEST_SECRET_KEY, build_street, enroll
from tests.ingest.test_mqtt_kit import Device, eventually
from tests.servers.influxdb import InfluxServer


async def _wait_for_case(db: Database) -> Case:
    for _ in range(500):
        async with db.session() as session:
            found = (await session.scalars(select(Case))).all()
        if found:
            assert len(found) == 1, [c.code for c in found]
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no case was opened for the panic press")


def _count(influxdb: InfluxServer, database: str, measurement: str, serial: str) -> int:
    answer = influxdb.query(
        f'SELECT count("battery") FROM "{measurement}" WHERE device_id = \'{serial}\'', database
    )
    series = answer["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


async def test_mqtt_uplinks_land_in_influxdb_and_feed_the_rules(
    database_url: str, tmp_path: Path, influxdb: InfluxServer, influx_database: str
) -> None:
    settings = Settings(
        database={"url": database_url},
        telemetry={"backend": "influxdb"},
        influx={"url": influxdb.url, "database": influx_database, "flush_interval": 0.05, "batch_size": 50},
        mqtt={"port": 0},
        coap={"port": 0},
        var_dir=tmp_path,
        secret_key=TEST_SECRET_KEY,
    )
    hub = build_hub(settings)
    await hub.start()
    devices: list[Device] = []
    try:
        street = await build_street(hub.db)
        smoke = await enroll(hub.db, "E2E-SM", "smoke", street.households[0])
        panic = await enroll(hub.db, "E2E-PB", "panic_button", street.households[1])
        port = int(hub.listening["mqtt"].rsplit(":", 1)[1])
        sensor = Device("E2E-SM", port, smoke.secrets.mqtt_password)
        button = Device("E2E-PB", port, panic.secrets.mqtt_password)
        intruder = Device("E2E-SM", port, "wrong-password", client_id="E2E-SM")
        devices += [sensor, button, intruder]
        assert await sensor.connect() and await button.connect()
        assert not await intruder.connect()
        body = {"smoke": 0.01, "temperature": 21.0, "rssi": -80}
        for seq in range(1, 21):
            fmt = "binary" if seq % 2 else "json"
            await sensor.up(DRIVERS["smoke"].encode({"seq": seq, "battery": 90 - seq, **body}, fmt))
        await sensor.up(b"{broken")  # refused, counted, the stream goes on
        await button.up(DRIVERS["panic_button"].encode({"seq": 1, "battery": 80, "events": ["pressed_long"]}))
        await eventually(
            lambda: _count(influxdb, influx_database, "smoke", "E2E-SM") == 20, "20 points in InfluxDB"
        )
        # The panic press becomes an urgent case with its escalation steps planned and stored.
        case = await _wait_for_case(hub.db)
        assert (case.category, case.urgency, case.state) == ("panic", "urgent", "discovered")
        async with hub.db.session() as session:
            steps = await list_steps(session, case.id)
        assert steps and all(step.due_at is not None for step in steps)
        status = hub.ingest.states.get(smoke.device.id)
        assert status is not None and status.metrics["battery"] == 70 and status.seq.highest == 20
        refused = hub.metrics.registry.get_sample_value(
            "iothub_ingest_rejected_total", {"transport": "mqtt", "reason": "bad_json"}
        )
        assert refused == 1
        readiness = {c.name: c.ok for c in await hub.lifecycle.health()}
        assert readiness == dict.fromkeys(
            ["database", "telemetry", "ingest", "rules", "outbox", "cases", "coap", "mqtt"], True
        )
    finally:
        for device in devices:
            device.close()
        await hub.stop()
    assert _count(influxdb, influx_database, "panic_button", "E2E-PB") == 1
