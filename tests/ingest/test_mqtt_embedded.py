"""MQTT ingest through the real embedded amqtt broker, with paho clients as devices, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from drivers import DRIVERS
from hub.config import MqttSettings
from hub.db import Database
from hub.ingest.mqtt_embedded import EmbeddedMqtt
from tests.ingest.test_mqtt_kit import Device, Rig, accepted, eventually, ingest_rig, rejected

SMOKE = DRIVERS["smoke"]


def reading(seq: int, temperature: float = 21.5, fmt: str = "json") -> bytes:
    """A smoke detector uplink."""
    fields = {"seq": seq, "smoke": 0.01, "temperature": temperature, "battery": 90, "rssi": -70}
    return SMOKE.encode(fields, fmt)  # type: ignore[arg-type]


@asynccontextmanager
async def embedded(db: Database, tmp_path: Path, *serials: str) -> AsyncIterator[tuple[Rig, EmbeddedMqtt]]:
    """A rig with ``serials`` enrolled and the embedded broker on a free port."""
    async with ingest_rig(db, tmp_path) as rig:
        for serial in serials:
            await rig.enroll(serial)
        mqtt = EmbeddedMqtt(MqttSettings(port=0), rig.ingest, rig.events, time.time, command_timeout=5.0)
        await mqtt.start()
        try:
            yield rig, mqtt
        finally:
            await mqtt.stop()


async def online(rig: Rig, mqtt: EmbeddedMqtt, serial: str, **kw: Any) -> Device:
    """A connected device."""
    assert mqtt.port is not None
    device = Device(serial, mqtt.port, rig.passwords[serial], **kw)
    assert await device.connect(), f"{serial} was refused"
    return device


async def test_uplinks_reach_the_store_and_the_device_state(db: Database, tmp_path: Path) -> None:
    """JSON, CBOR (forced by topic suffix) and binary frames are stored; the state follows."""
    async with embedded(db, tmp_path, "SD-1") as (rig, mqtt):
        device = await online(rig, mqtt, "SD-1")
        await device.up(reading(1, 21.5))
        await device.up(reading(2, 22.5, "cbor"), suffix="cbor")
        await device.up(reading(3, 23.5, "binary"))
        await eventually(lambda: accepted(rig.metrics) == 3, "three accepted uplinks")
        assert await rig.stored("SD-1", "temperature") == [21.5, 22.5, 23.5]
        entry = rig.ingest.directory.get("SD-1")
        assert entry is not None
        state = rig.ingest.states.get(entry.id)
        assert state is not None and state.online and state.seq.highest == 3
        assert state.metrics["temperature"] == 23.5
        ok, detail = await mqtt.health()
        assert ok and "1 connected" in detail
        device.close()


async def test_every_bad_uplink_is_refused_and_counted_and_ingest_goes_on(
    db: Database, tmp_path: Path
) -> None:
    """Bad JSON, a bad frame, another's topic, an oversized payload, a replay: each counted; good ones pass."""
    async with embedded(db, tmp_path, "SD-1", "SD-2") as (rig, mqtt):
        device = await online(rig, mqtt, "SD-1")
        bad: list[tuple[str, bytes, str]] = [
            ("devices/SD-1/up", b'{"v":1,"seq":', "bad_json"),
            ("devices/SD-1/up/bin", b"\xf1\x01\x00", "truncated"),
            ("devices/SD-2/up", reading(50), "acl"),
            ("devices/SD-1/cmd", b"{}", "acl"),
            ("elsewhere/x", b"{}", "acl"),
            ("devices/SD-1/up", b"{" + b" " * (64 * 1024) + b"}", "too_large"),
            ("devices/SD-1/up", reading(1), "replayed"),
        ]
        seq = 1
        await device.up(reading(seq))
        for topic, payload, reason in bad:
            before = rejected(rig.metrics, reason)
            await device.publish(topic, payload)
            await eventually(lambda r=reason, b=before: rejected(rig.metrics, r) > b, f"a {reason} refusal")
            seq += 1
            await device.up(reading(seq))
            await eventually(lambda n=seq: accepted(rig.metrics) == n, f"good uplink {seq} after {reason}")
        letters = rig.ingest.dead_letters.recent(device="SD-1")
        assert {letter.reason for letter in letters} >= {"acl", "too_large", "replayed"}
        assert await rig.stored("SD-2", "temperature") == []
        device.close()


async def test_connect_refusals_are_counted_by_reason(db: Database, tmp_path: Path) -> None:
    """Unknown serial, wrong password, no password, foreign client id, revoked device: CONNACK refused."""
    async with embedded(db, tmp_path, "SD-1", "SD-2") as (rig, mqtt):
        assert mqtt.port is not None
        await rig.revoke("SD-2")
        cases = [
            (Device("NOPE-9", mqtt.port, "whatever"), "unknown_device"),
            (Device("SD-1", mqtt.port, "wrong-password"), "bad_credentials"),
            (Device("SD-1", mqtt.port, None), "bad_credentials"),
            (Device("SD-1", mqtt.port, rig.passwords["SD-1"], client_id="SD-1-x"), "bad_client_id"),
            (Device("SD-2", mqtt.port, rig.passwords["SD-2"]), "revoked"),
        ]
        for device, reason in cases:
            before = rejected(rig.metrics, reason)
            assert not await device.connect(), f"{device.serial} ({reason}) was let in"
            assert rejected(rig.metrics, reason) == before + 1
            device.client.loop_stop()
        good = await online(rig, mqtt, "SD-1")
        await good.up(reading(1))
        await eventually(lambda: accepted(rig.metrics) == 1, "an uplink after the refusals")
        good.close()


async def test_a_stranger_cannot_kick_a_device_off_with_its_client_id(db: Database, tmp_path: Path) -> None:
    """amqtt would drop the session named in any CONNECT; the hub authenticates first."""
    async with embedded(db, tmp_path, "SD-1") as (rig, mqtt):
        assert mqtt.port is not None and mqtt.broker is not None
        device = await online(rig, mqtt, "SD-1")
        stranger = Device("SD-1", mqtt.port, "guessed")
        assert not await stranger.connect()
        stranger.client.loop_stop()
        assert mqtt.broker.connected("SD-1") and not device.disconnected.is_set()
        await device.up(reading(1))
        await eventually(lambda: accepted(rig.metrics) == 1, "the device's uplink after the attempt")
        device.close()


async def test_subscribe_acl_and_a_command_round_trip(db: Database, tmp_path: Path) -> None:
    """A device subscribes to its own cmd topic only; a command goes down and its result comes back."""
    async with embedded(db, tmp_path, "SD-1", "SD-2") as (rig, mqtt):
        device = await online(rig, mqtt, "SD-1")
        device.client.subscribe([("devices/SD-1/cmd", 1), ("devices/SD-2/cmd", 1), ("devices/#", 1)])
        await eventually(lambda: len(device.subacks) == 3, "the SUBACK")
        assert [code.value for code in device.subacks] == [1, 0x80, 0x80]
        assert rejected(rig.metrics, "acl") == 2
        record = await mqtt.send_command("SD-1", "set_heartbeat", {"interval_s": 600})
        await eventually(lambda: device.received, "the command")
        topic, payload = device.received[0]
        command = json.loads(payload)
        assert topic == "devices/SD-1/cmd" and command["cmd"] == "set_heartbeat"
        assert command["args"] == {"interval_s": 600} and command["cid"] == record.cid
        answer = {"cid": record.cid, "cmd": "set_heartbeat", "ok": True, "code": 0}
        await device.publish("devices/SD-1/cmd/result", json.dumps(answer).encode())
        done = await mqtt.commands.wait(record, timeout=5)
        assert done.status == "ok" and done.result is not None and done.result["code"] == 0
        await device.publish("devices/SD-1/cmd/result", json.dumps({**answer, "cid": 7}).encode())
        await eventually(lambda: rejected(rig.metrics, "unmatched_result") == 1, "an unmatched result")
        silent = await mqtt.send_command("SD-1", "self_test")
        assert (await mqtt.commands.wait(silent, timeout=0.2)).status == "timeout"
        device.close()


async def test_last_will_and_lost_connection_mark_the_device_offline(db: Database, tmp_path: Path) -> None:
    """A device that vanishes is offline: by its will, or by the lost session."""
    async with embedded(db, tmp_path, "SD-1") as (rig, mqtt):
        device = await online(rig, mqtt, "SD-1")
        await device.publish("devices/SD-1/status", b"online")
        await device.up(reading(1))
        entry = rig.ingest.directory.get("SD-1")
        assert entry is not None
        await eventually(lambda: accepted(rig.metrics) == 1, "the uplink")
        async with rig.ingest.bus.subscribe() as events:
            device.drop()
            await eventually(lambda: not rig.ingest.states.get(entry.id).online, "the device offline")  # type: ignore[union-attr]
            event = await events.get()
        assert event["type"] == "offline" and event["device"] == "SD-1" and event["why"] == "last will"


async def test_revocation_and_rotation_close_the_live_session(db: Database, tmp_path: Path) -> None:
    """Revoked: disconnected, and refused at the next CONNECT; rotated: only the new password works."""
    async with embedded(db, tmp_path, "SD-1", "SD-2") as (rig, mqtt):
        assert mqtt.port is not None
        first = await online(rig, mqtt, "SD-1")
        await rig.revoke("SD-1")
        await eventually(first.disconnected.is_set, "the revoked session closed", timeout=1.0)
        first.client.loop_stop()
        again = Device("SD-1", mqtt.port, rig.passwords["SD-1"])
        assert not await again.connect()
        again.client.loop_stop()
        assert rejected(rig.metrics, "revoked") == 1

        second = await online(rig, mqtt, "SD-2")
        old = rig.passwords["SD-2"]
        new = await rig.rotate("SD-2")
        await eventually(second.disconnected.is_set, "the rotated session closed", timeout=1.0)
        second.client.loop_stop()
        await eventually(lambda: rig.ingest.directory.get("SD-2").generation == 2, "the refresh")  # type: ignore[union-attr]
        stale = Device("SD-2", mqtt.port, old)
        assert not await stale.connect()
        stale.client.loop_stop()
        fresh = Device("SD-2", mqtt.port, new)
        assert await fresh.connect()
        await fresh.up(reading(1))
        await eventually(lambda: accepted(rig.metrics) == 1, "an uplink with the new password")
        fresh.close()
